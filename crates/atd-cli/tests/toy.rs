//! `atd toy`: the paper's 2-D example keeps its margin claim.

use atd_train::toy;

#[test]
fn attacking_the_closed_set_widens_the_margin_around_it() {
    let data = toy::ToyData::new(0);
    let side = 81;
    let margin =
        |setting| toy::margin(&toy::decision_grid(&toy::train(&data, setting, 300, 0), side), side, &data.closed, true);
    let [standard, closed, _, _, atd] = toy::SETTINGS;
    let (m_standard, m_closed, m_atd) = (margin(standard), margin(closed), margin(atd));
    eprintln!(
        "closed-set margin: standard {m_standard:.3}, closed attacked {m_closed:.3}, closed and open attacked {m_atd:.3}"
    );
    assert!(
        m_closed > 1.5 * m_standard,
        "attacking the closed set did not widen its margin: {m_standard} -> {m_closed}"
    );
    assert!(m_atd > 1.5 * m_standard, "ATD's setting did not widen the closed-set margin: {m_standard} -> {m_atd}");
}
