//! The attack's random start, identical on every engine: a counter-based generator (a PCG
//! output permutation of the element index mixed with the seed), so the WGSL shader
//! (`shaders/attack.wgsl`) and the Burn attack draw the very same start, bit for bit.

/// PCG's 32-bit output permutation (as `pcg` in `shaders/attack.wgsl`).
pub fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277_803_737);
    (w >> 22) ^ w
}

/// Uniform in [-1, 1), a multiple of 2^-23, for element `index` of the start drawn with `seed`.
pub fn noise(seed: u32, index: u32) -> f32 {
    (pcg(index ^ pcg(seed)) >> 8) as f32 / 8_388_608.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_uniform_on_the_symmetric_interval() {
        let values: Vec<f32> = (0..100_000).map(|i| noise(7, i)).collect();
        assert!(values.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let below = values.iter().filter(|&&v| v < -0.5).count() as f32 / values.len() as f32;
        assert!(mean.abs() < 0.01 && (below - 0.25).abs() < 0.01, "mean {mean}, P(v < -0.5) = {below}");
        assert_ne!(noise(7, 3), noise(8, 3), "the seed matters");
        // A known value pins the generator (the WGSL copy must agree).
        assert_eq!(pcg(0), 129_708_002);
    }
}
