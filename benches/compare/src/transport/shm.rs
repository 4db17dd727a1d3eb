//! Not built yet.

use anyhow::{bail, Result};

use crate::ctx::{SinkCtx, SourceCtx};

/// The sender.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    bail!("{} is not built yet", ctx.spec().transport)
}

/// A consumer.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    bail!("{} is not built yet", ctx.spec().transport)
}
