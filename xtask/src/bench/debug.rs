//! What `--debug` costs: Lua and SQLite built with `-g` (gcc), linked by
//! `solder run --noexec` with and without `--debug`, alternated, medians.
//! With `--debug` every object of the load is copied once with its section
//! addresses, kept and registered with the GDB JIT interface (in process).

use std::ffi::OsString;

use anyhow::Result;

use super::report::Table;
use super::{Schedule, Setup, alternate, ms};
use crate::bench::measure::median_ms;
use crate::programs::{self, catalog};

pub(super) fn debug_cost(cx: &Setup) -> Result<Table> {
    let mut table = Table::new(
        "Debug information: `solder run --noexec` with and without `--debug`",
        "Lua and SQLite built with gcc -O2 -g; whole process, in process. With `--debug` every \
         object is read whole and copied once with its sections' load addresses, on the load's \
         threads: the copy the session keeps, shared with its registration through the GDB JIT \
         interface (what a debugger then reads); in process, every function's line table is \
         read ahead for crash reports from its own object's DWARF (most of the cost for \
         SQLite, whose -g object is large); without it the objects' DWARF sections are not even read (a hole \
         of zeros in each object's bytes, docs/architecture.md: \"Objects read without their \
         debug sections\"). No target: the cost is reported so that turning it on is an \
         informed choice (it is off by default).",
        &[
            "program",
            "objects",
            "without --debug",
            "with --debug",
            "ratio",
            "per object",
        ],
    );
    let built = programs::build_programs_as(&["gcc"], &["lua", "sqlite"], &catalog::DEBUG_INFO)?;
    let solder = cx.release.join("solder");
    let schedule = Schedule::interleaved(if cx.quick { 1 } else { cx.runs * 3 });
    for program in &built {
        let objects = program.objects.iter().map(|o| o.clone().into_os_string());
        let plain: Vec<OsString> = ["run", "--noexec"]
            .into_iter()
            .map(OsString::from)
            .chain(objects.clone())
            .collect();
        let debug: Vec<OsString> = ["run", "--noexec", "--debug"]
            .into_iter()
            .map(OsString::from)
            .chain(objects)
            .collect();
        let runs = alternate(
            cx,
            &[
                (&solder, plain, &program.cwd),
                (&solder, debug, &program.cwd),
            ],
            schedule,
        )?;
        let (without, with) = (median_ms(&runs[0]), median_ms(&runs[1]));
        let count = program.objects.len();
        table.row(vec![
            format!("{} (gcc -g)", program.name),
            count.to_string(),
            ms(without),
            ms(with),
            format!("{:.2}×", with / without.max(f64::MIN_POSITIVE)),
            format!("{:.0} µs", (with - without) * 1000.0 / count.max(1) as f64),
        ]);
    }
    Ok(table)
}
