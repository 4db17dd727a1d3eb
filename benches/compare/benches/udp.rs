//! `cargo bench -p camring-bench --bench udp`: [`camring_bench::adapters::udp`]; without
//! `--bench` (as under `cargo test --all-targets`) its smoke run.

fn main() -> anyhow::Result<()> {
    camring_bench::adapters::udp::main()
}
