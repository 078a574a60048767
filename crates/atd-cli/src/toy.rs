//! `atd toy`: the paper's 2-D example (Fig. 4).

use std::path::PathBuf;

/// `atd toy`'s arguments.
#[derive(clap::Args)]
pub struct ToyArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: ToyArgs) -> anyhow::Result<()> {
    let ToyArgs { out, epochs, seed } = args;
    println!("setting\tattacked (closed, open, generated)\tclosed-set margin\topen-set margin");
    for (s, closed, open) in atd_train::toy::run(&out, epochs, seed)? {
        println!("{}\t{} {} {}\t{closed:.3}\t{open:.3}", s.name, s.closed, s.open, s.generated);
    }
    println!("decision maps: {}/toy-*.png (blue = in, orange = out)", out.display());
    Ok(())
}
