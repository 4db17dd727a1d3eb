//! Baseline: iceoryx2 0.10, the shared-memory IPC library a user would compare the ring
//! with ([`crate::profile::Transport::Iceoryx2`]).
//!
//! One publish-subscribe service of `[u8]` slices named after the cell, whose user header
//! is the frame number and capture time, and one event service of the same name. The
//! sender loans a slice per multi-frame, copies the images into it (one copy of the
//! multi-frame's bytes, as the ring's writer does), sends it and notifies; a consumer
//! blocks on its event listener (a wake like the ring's futex, rather than busy-polling)
//! and takes the sample waiting, read in place (zero-copy, like
//! `shm-zero-copy`). Subscriber queues hold one sample and overflow safely: the newest
//! replaces an older one not yet taken, as a lapped ring reader gets the newest.
//!
//! Files: iceoryx2 keeps its node and service records under a root directory, here the
//! cell's (the runner removes it), and its shared memory in /dev/shm under a prefix, here
//! `iox2cb<PID>_` with the sender's process id (announced as the endpoint: the consumers
//! use it too). A normal run removes everything: the ports, services and nodes remove
//! theirs when dropped, and the sender, when it ends, the segment iceoryx2 keeps for ever
//! per prefix (a node counter). A sender starting removes the segments of earlier cells
//! whose sender is dead (killed by the runner on a timeout), so those do not accumulate;
//! [`remove_dead_segments`] does it for the runner.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use iceoryx2::prelude::*;

use crate::ctx::{SinkCtx, SourceCtx, Spec};

/// The start of this benchmark's shared-memory names in /dev/shm (then the sender's pid
/// and `_`).
const PREFIX: &str = "iox2cb";
/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";
/// The end of the name of the segment iceoryx2 keeps per prefix for ever (its node
/// counter): removed by the sender when it ends, once every node of the cell exists.
const GLOBAL_MGMT: &str = ".global_mgmt";
/// How long a consumer blocks on its listener before looking at the window again.
const POLL: Duration = Duration::from_millis(50);
/// The user header: frame number, capture time (CLOCK_REALTIME ns).
type Header = [u64; 2];

/// Converts an iceoryx2 error (they print best with Debug).
fn ix<T, E: Debug>(r: Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow!("iceoryx2: {what}: {e:?}"))
}

/// The configuration of a cell: records under the cell's directory, shared memory
/// names starting with `prefix`.
fn config(dir: &std::path::Path, prefix: &str) -> Result<Config> {
    let mut config = Config::default();
    let root = dir.to_str().context("the cell's directory is not UTF-8")?;
    config
        .global
        .set_root_path(&ix(Path::new(root.as_bytes()), "root path")?);
    config.global.prefix = ix(FileName::new(prefix.as_bytes()), "prefix")?;
    Ok(config)
}

/// A node of the cell, without signal handlers (the runner stops children with `stop` and
/// kills them on a timeout), and the name of the cell's services.
fn node(spec: &Spec, prefix: &str) -> Result<(Node<ipc::Service>, ServiceName)> {
    set_log_level(LogLevel::Error);
    let config = config(&spec.dir, prefix)?;
    let node = ix(
        NodeBuilder::new()
            .config(&config)
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>(),
        "creating a node",
    )?;
    Ok((node, ix(ServiceName::new(&spec.name), "service name")?))
}

/// Removes the /dev/shm segments of this benchmark's cells whose sender process is gone
/// (killed): a sender calls it when it starts; the runner may call it once its children
/// are gone.
pub fn remove_dead_segments() {
    remove_segments(PREFIX, |name| {
        name.split_once('_')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    });
}

/// Removes the /dev/shm files whose name starts with `prefix` and whose rest satisfies
/// `matches`.
fn remove_segments(prefix: &str, matches: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(SHM_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .is_some_and(&matches)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The sender.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    remove_dead_segments();
    let prefix = format!("{PREFIX}{}_", std::process::id());
    let spec = ctx.spec().clone();
    // One contiguous copy of the multi-frame, made once: each sample is filled from it
    // with one copy (iceoryx2's safe API initialises a loaned slice from one slice).
    let payload: Vec<u8> = ctx.frames().images.concat();
    let consumers = spec.consumers.max(1) as usize;

    let (node, name) = node(&spec, &prefix)?;
    let pubsub = ix(
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .user_header::<Header>()
            .max_publishers(1)
            .max_subscribers(consumers)
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .subscriber_max_borrowed_samples(1)
            .enable_safe_overflow(true)
            .create(),
        "creating the publish-subscribe service",
    )?;
    let event = ix(
        node.service_builder(&name)
            .event()
            .max_notifiers(1)
            .max_listeners(consumers)
            .create(),
        "creating the event service",
    )?;
    let publisher = ix(
        pubsub
            .publisher_builder()
            .initial_max_slice_len(payload.len())
            .allocation_strategy(AllocationStrategy::Static)
            .max_loaned_samples(1)
            .create(),
        "creating the publisher",
    )?;
    let notifier = ix(event.notifier_builder().create(), "creating the notifier")?;

    ctx.ready(&prefix)?;
    while let Some(stamp) = ctx.next_stamp() {
        let mut sample = ix(publisher.loan_slice_uninit(payload.len()), "loan")?;
        *sample.user_header_mut() = [stamp.seq, stamp.capture_ns];
        let sample = sample.write_from_slice(&payload);
        ix(sample.send(), "send")?;
        ix(notifier.notify(), "notify")?;
    }
    // Ports before services before the node: the last user of a service removes it.
    drop(notifier);
    drop(publisher);
    drop(event);
    drop(pubsub);
    drop(node);
    remove_segments(&prefix, |name| name.ends_with(GLOBAL_MGMT));
    Ok(())
}

/// A consumer.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    let spec = ctx.spec().clone();
    let prefix = ctx.endpoint().to_owned();
    if !prefix.starts_with(PREFIX) {
        bail!("unexpected iceoryx2 endpoint {prefix:?}");
    }
    let want = ctx.frames().len();
    let (head, tail) = check_bytes(ctx.frames().images.concat());

    let (node, name) = node(&spec, &prefix)?;
    let pubsub = ix(
        node.service_builder(&name)
            .publish_subscribe::<[u8]>()
            .user_header::<Header>()
            .open(),
        "opening the publish-subscribe service",
    )?;
    let event = ix(
        node.service_builder(&name).event().open(),
        "opening the event service",
    )?;
    let subscriber = ix(
        pubsub.subscriber_builder().buffer_size(1).create(),
        "creating the subscriber",
    )?;
    let listener = ix(event.listener_builder().create(), "creating the listener")?;

    ctx.ready()?;
    while !ctx.done() {
        // The queue holds one sample, the newest (safe overflow replaces an older one).
        let Some(sample) = ix(subscriber.receive(), "receive")? else {
            let timeout = ctx.remaining().min(POLL);
            if !timeout.is_zero() {
                ix(listener.timed_wait(|_| {}, timeout), "wait")?;
            }
            continue;
        };
        let [seq, capture_ns] = *sample.user_header();
        let bytes = sample.payload();
        let whole = bytes.len() == want && bytes.starts_with(&head) && bytes.ends_with(&tail);
        drop(sample);
        if !whole {
            ctx.corrupt();
        } else if !ctx.frame(seq, capture_ns, want) {
            break;
        }
    }
    drop(listener);
    drop(subscriber);
    drop(event);
    drop(pubsub);
    drop(node);
    Ok(())
}

/// The first and last bytes of the multi-frame, which a consumer checks in place (a cheap
/// sign that the sample holds what was sent, without copying or scanning it).
fn check_bytes(all: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let n = all.len().min(64);
    (all[..n].to_vec(), all[all.len() - n..].to_vec())
}
