//! The matrix of cells, run interleaved; results as a table, JSON and a plot.
//!
//! Every round runs every group (profile × rate × consumer count); inside a group the
//! transports run one after the other in a fresh random order (a fixed seed: runs
//! repeat), so that a noisy neighbour hits them alike and the ratios between them hold.
//! Figures accumulate per cell over the rounds.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use camring_testkit::Order;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cell::{self, Cell, Setup};
use crate::profile::{Profile, Rate, Transport};
use crate::report::{self, Acc, Document, Machine};

/// The seed of the transports' order in each group.
const SEED: u64 = 0x6361_6d72_696e_6721;

/// What `camring bench` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A short run (seconds), for CI.
    pub quick: bool,
    /// Where to write the JSON results.
    pub json: Option<PathBuf>,
    /// Where to write the plot (`.svg` or `.png`).
    pub plot: Option<PathBuf>,
    /// The command that starts a child: the `camring` binary and [`crate::CHILD_SUBCOMMAND`].
    pub child: Vec<String>,
    /// Rounds (default: 2, quick 1).
    pub rounds: Option<u32>,
    /// Each cell's measuring window, seconds (default: 2, quick 0.5).
    pub window: Option<f64>,
    /// Only these transports (default: all).
    pub transports: Option<Vec<Transport>>,
    /// Only these profiles (default: all, quick small).
    pub profiles: Option<Vec<Profile>>,
    /// The command line, for the report's header.
    pub command: String,
}

/// The cells to run and how.
#[derive(Debug, Clone)]
struct Plan {
    rounds: u32,
    warmup: Duration,
    window: Duration,
    transports: Vec<Transport>,
    profiles: Vec<Profile>,
    consumers: Vec<u32>,
}

impl Plan {
    /// The full run or the quick one, with the options' overrides.
    fn new(o: &Options) -> Result<Plan> {
        let (rounds, warmup, window, profiles, consumers) = if o.quick {
            (1, 0.2, 0.5, vec![Profile::Small], vec![1, 2])
        } else {
            (2, 0.5, 2.0, Profile::ALL.to_vec(), vec![1, 3])
        };
        let window = o.window.unwrap_or(window);
        if !(window > 0.0 && window <= 3600.0) {
            bail!("--window must be between 0 and 3600 seconds, not {window}");
        }
        let plan = Plan {
            rounds: o.rounds.unwrap_or(rounds),
            warmup: Duration::from_secs_f64(warmup),
            window: Duration::from_secs_f64(window),
            transports: dedup(o.transports.clone().unwrap_or(Transport::ALL.to_vec())),
            profiles: dedup(o.profiles.clone().unwrap_or(profiles)),
            consumers,
        };
        if plan.rounds == 0 || plan.transports.is_empty() || plan.profiles.is_empty() {
            bail!("nothing to run: no rounds, transports or profiles");
        }
        Ok(plan)
    }

    /// The groups of a round: profile × rate × consumers.
    fn groups(&self) -> Vec<(Profile, Rate, u32)> {
        let mut g = Vec::new();
        for &p in &self.profiles {
            for r in [Rate::Fixed, Rate::Max] {
                for &c in &self.consumers {
                    g.push((p, r, c));
                }
            }
        }
        g
    }

    /// Every cell, in report order.
    fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for (profile, rate, consumers) in self.groups() {
            for &transport in &self.transports {
                cells.push(Cell {
                    transport,
                    profile,
                    rate,
                    consumers,
                });
            }
        }
        cells
    }
}

/// `v` without repeats, in its order.
fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Runs the benchmark: prints the Markdown table, writes the JSON and the plot; fails
/// (after writing them) if any cell failed.
pub fn run(opts: &Options) -> Result<()> {
    let plan = Plan::new(opts)?;
    let setup = Setup {
        child: opts.child.clone(),
        warmup: plan.warmup,
        window: plan.window,
        // Raised by SIGINT or SIGTERM (a second one ends the process at once).
        interrupted: camring_testkit::interrupt_flag()?,
    };
    let accs = measure(&plan, &setup)?;
    let doc = Document {
        machine: Machine::this(),
        command: opts.command.clone(),
        quick: opts.quick,
        rounds: plan.rounds,
        warmup_s: plan.warmup.as_secs_f64(),
        window_s: plan.window.as_secs_f64(),
        results: report::results(&accs),
    };
    print!("{}", doc.markdown());
    if let Some(path) = &opts.json {
        let json = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &opts.plot {
        crate::plot::write(path, &doc.results)?;
    }
    let failed: Vec<String> = doc
        .results
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.cell().to_string())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} cells failed: {}",
            failed.len(),
            doc.results.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Runs every round of every cell; a failed cell is recorded and the run goes on. Only an
/// interruption stops it.
fn measure(plan: &Plan, setup: &Setup) -> Result<Vec<Acc>> {
    let cells = plan.cells();
    let mut accs: Vec<Acc> = cells.iter().map(|c| Acc::new(*c)).collect();
    let bar = progress_bar(cells.len() as u64 * u64::from(plan.rounds));
    let mut rng = Order::new(SEED);
    let mut n = 0;
    for round in 0..plan.rounds {
        for (profile, rate, consumers) in plan.groups() {
            let mut order = plan.transports.clone();
            rng.shuffle(&mut order);
            for transport in order {
                let cell = Cell {
                    transport,
                    profile,
                    rate,
                    consumers,
                };
                bar.set_message(format!("round {}/{}: {cell}", round + 1, plan.rounds));
                n += 1;
                let result = cell::run(setup, cell, n);
                let acc = accs
                    .iter_mut()
                    .find(|a| a.cell() == cell)
                    .context("cell not in the plan")?;
                record(setup, &bar, acc, round, result)?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    Ok(accs)
}

/// Adds a cell's outcome to its figures; reports a failure on stderr. Errs only on an
/// interruption.
fn record(
    setup: &Setup,
    bar: &ProgressBar,
    acc: &mut Acc,
    round: u32,
    result: Result<cell::CellReport>,
) -> Result<()> {
    let error = match result.and_then(|r| acc.add(&r)) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if setup.interrupted() {
        bar.finish_and_clear();
        bail!("interrupted");
    }
    bar.suspend(|| eprintln!("camring bench: {}: {error:#}", acc.cell()));
    acc.fail(round, &error);
    Ok(())
}

/// A bar on stderr (hidden when stderr is not a terminal).
fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed}] {bar:30} {pos}/{len} cells, ETA {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_plan_is_small_and_short() {
        let p = Plan::new(&Options {
            quick: true,
            ..Options::default()
        })
        .unwrap();
        assert_eq!(p.rounds, 1);
        assert_eq!(p.profiles, vec![Profile::Small]);
        assert_eq!(p.consumers, vec![1, 2]);
        // Every transport at both rates with 1 and 2 consumers.
        assert_eq!(p.cells().len(), Transport::ALL.len() * 2 * 2);
        assert!(p.warmup + p.window <= Duration::from_secs(1));
    }

    #[test]
    fn full_plan_covers_the_matrix() {
        let p = Plan::new(&Options::default()).unwrap();
        assert_eq!(p.rounds, 2);
        assert_eq!(p.cells().len(), Transport::ALL.len() * 3 * 2 * 2);
        let cells = p.cells();
        for t in Transport::ALL {
            for profile in Profile::ALL {
                for rate in [Rate::Fixed, Rate::Max] {
                    for consumers in [1, 3] {
                        let c = Cell {
                            transport: t,
                            profile,
                            rate,
                            consumers,
                        };
                        assert!(cells.contains(&c), "{c} missing");
                    }
                }
            }
        }
    }

    #[test]
    fn overrides_apply_and_bad_ones_fail() {
        let p = Plan::new(&Options {
            rounds: Some(3),
            window: Some(1.5),
            transports: Some(vec![Transport::Tcp, Transport::Memcpy, Transport::Tcp]),
            profiles: Some(vec![Profile::Large]),
            ..Options::default()
        })
        .unwrap();
        assert_eq!(p.rounds, 3);
        assert_eq!(p.window, Duration::from_millis(1500));
        assert_eq!(p.transports, vec![Transport::Tcp, Transport::Memcpy]);
        assert_eq!(p.cells().len(), 2 * 2 * 2);
        for bad in [
            Options {
                rounds: Some(0),
                ..Options::default()
            },
            Options {
                window: Some(0.0),
                ..Options::default()
            },
            Options {
                transports: Some(vec![]),
                ..Options::default()
            },
        ] {
            assert!(Plan::new(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_order_is_shuffled_but_repeats() {
        let order = || {
            let mut rng = Order::new(SEED);
            (0..4)
                .map(|_| {
                    let mut v = Transport::ALL.to_vec();
                    rng.shuffle(&mut v);
                    v
                })
                .collect::<Vec<_>>()
        };
        let a = order();
        assert_eq!(a, order());
        assert!(a.iter().any(|v| v != &Transport::ALL.to_vec()));
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
