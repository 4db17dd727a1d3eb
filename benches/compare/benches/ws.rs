//! `cargo bench -p camring-bench --bench ws`: [`camring_bench::adapters::ws`]; without
//! `--bench` (as under `cargo test --all-targets`) its smoke run.

fn main() -> anyhow::Result<()> {
    camring_bench::adapters::ws::main()
}
