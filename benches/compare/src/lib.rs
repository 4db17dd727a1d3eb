//! `camring bench`: the same synthetic multi-frames through every camring transport and
//! the baselines a user compares them with, interleaved in one process tree, reported as
//! a Markdown table, JSON and a plot (docs/benchmarks.md, "Transport comparison").
//!
//! - [`profile`]: what is measured (profiles, rates, transports, the multi-frame).
//! - [`ctx`]: the two sides of one cell, each in its own process, and how they talk to
//!   the runner.
//! - [`ring`]: the sender of the ring-based transports.
//! - [`transport`]: one module per transport, each a sender and a consumer.
//! - [`runner`]: the matrix of cells and interleaved rounds.
//! - [`cell`]: one cell's children, driven with deadlines, cleaned up whatever happens.
//! - [`report`]: the figures, as JSON and Markdown tables; [`plot`]: as an SVG.
//! - [`adapters`]: the network adapters against bare senders of the same bytes, run by
//!   this crate's `[[bench]]` targets (`cargo bench -p camring-bench --bench ws`).

pub mod adapters;
pub mod cell;
pub mod ctx;
pub mod plot;
pub mod profile;
pub mod report;
pub mod ring;
pub mod runner;
pub mod transport;

use anyhow::{bail, Context, Result};

pub use profile::{Profile, Rate, Transport};
pub use runner::{run, Options};

/// The hidden subcommand a child is started with: `camring bench-child ROLE SPEC_JSON`.
pub const CHILD_SUBCOMMAND: &str = "bench-child";

/// Runs a child of the benchmark: `role` is `source` or `sink`, `spec` a [`ctx::Spec`] in
/// JSON.
pub fn child_main(role: &str, spec: &str) -> Result<()> {
    let spec: ctx::Spec = serde_json::from_str(spec).context("bad child spec")?;
    match role {
        "source" => {
            let mut ctx = ctx::SourceCtx::new(spec)?;
            transport::source(&mut ctx)?;
            ctx.finish()
        }
        "sink" => {
            let mut ctx = ctx::SinkCtx::new(spec)?;
            transport::sink(&mut ctx)?;
            ctx.finish()
        }
        other => bail!("unknown child role {other:?}"),
    }
}
