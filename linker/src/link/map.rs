//! The link map of one load (`--map`, `--print-map`): where every section
//! and symbol went, what every GOT entry and stub holds, and which archive
//! members the load took and why.
//!
//! Made only when asked ([`LinkRequest::map`](super::LinkRequest::map)),
//! after the module is written: GOT values are read back from the written
//! bytes, so the map says what the memory holds, not what the plan meant.

use std::fmt::Write as _;

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use super::exports::exported_target;
use super::plan::{GotSlot, Plan};
use super::resolve::{Resolver, Target};
use super::write::Addresses;
use crate::arch::machine::JUMP_STUB;
use crate::graph::*;

/// One load's link map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkMap {
    pub module: u32,
    /// The module's memory: first address and size.
    pub base: u64,
    pub size: u64,
    pub segments: Vec<MapSegment>,
    pub sections: Vec<MapSection>,
    pub symbols: Vec<MapSymbol>,
    pub got: Vec<MapGotEntry>,
    pub stubs: Vec<MapStub>,
    /// Archive members the load took (filled in by the session).
    pub members: Vec<MapMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSegment {
    pub address: u64,
    pub size: u64,
    /// `r-x`, `r--` or `rw-`.
    pub protection: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSection {
    pub object: String,
    pub name: String,
    pub address: u64,
    pub size: u64,
    pub align: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSymbol {
    pub name: String,
    pub object: String,
    /// `None` for a thread-local variable (each thread has its own).
    pub address: Option<u64>,
    /// A thread-local variable's offset in the load's block.
    pub thread_local_offset: Option<u64>,
    pub size: u64,
    /// `global`, `weak` or `local`.
    pub binding: &'static str,
    /// `default`, `protected`, `hidden` or `internal`.
    pub visibility: &'static str,
    /// `function`, `data`, `thread-local` or `other`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapGotEntry {
    pub address: u64,
    /// The 8 bytes the entry holds, as written.
    pub value: u64,
    /// What it holds: `address`, `tp-offset`, `tp-offset-if-fixed`, `module`, `dtp-offset`,
    /// `load-module`, `zero` or `descriptor-resolver`.
    pub holds: &'static str,
    /// The symbol whose address (or thread-local place) it holds, when it
    /// has a name.
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapStub {
    pub address: u64,
    /// The GOT entry it jumps through.
    pub got_entry: u64,
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapMember {
    /// `libfoo.a(bar.o)`.
    pub member: String,
    /// The name that pulled it in; `None` when its archive was whole.
    pub pulled_by: Option<String>,
}

/// The map of the load `resolver` linked at `at`, with `memory` its
/// written bytes.
pub(super) fn link_map(
    resolver: &Resolver<'_, '_, '_>,
    plan: &Plan,
    at: &Addresses<'_>,
    memory: &[u8],
) -> LinkMap {
    let names = target_names(resolver);
    let name_of = |target: Target| names.get(&target).cloned();
    let layout = at.layout;
    let got = plan
        .got_keys
        .iter()
        .enumerate()
        .map(|(i, (slot, _))| {
            let offset = layout.got + 8 * i as u64;
            let (holds, target) = describe_slot(*slot);
            MapGotEntry {
                address: at.base + offset,
                value: read_u64(memory, offset),
                holds,
                target: target.and_then(name_of),
            }
        })
        .collect::<Vec<_>>();
    let stubs = plan
        .plt
        .iter()
        .enumerate()
        .map(|(i, &slot)| MapStub {
            address: at.base + layout.plt + (i * JUMP_STUB.len()) as u64,
            got_entry: at.got_entry(slot),
            target: got[slot].target.clone(),
        })
        .collect();
    LinkMap {
        module: resolver.req.module,
        base: at.base,
        size: layout.total,
        segments: layout
            .segments
            .iter()
            .filter(|s| s.1 > 0)
            .map(|&(offset, size, protection)| MapSegment {
                address: at.base + offset,
                size,
                protection: protection_name(protection),
            })
            .collect(),
        sections: sections(resolver.graphs, at),
        symbols: symbols(resolver, at),
        got,
        stubs,
        members: Vec::new(),
    }
}

fn read_u64(memory: &[u8], offset: u64) -> u64 {
    let offset = offset as usize;
    memory
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn describe_slot(slot: GotSlot) -> (&'static str, Option<Target>) {
    match slot {
        GotSlot::Address(t) => ("address", Some(t)),
        GotSlot::TpOffset(t) => ("tp-offset", Some(t)),
        GotSlot::Module(t) => ("module", Some(t)),
        GotSlot::DtpOffset(t) => ("dtp-offset", Some(t)),
        GotSlot::TpOffsetIfFixed(t) => ("tp-offset-if-fixed", Some(t)),
        GotSlot::LoadModule => ("load-module", None),
        GotSlot::Zero => ("zero", None),
        GotSlot::DescriptorResolver => ("descriptor-resolver", None),
    }
}

/// A name for every target the load can reach: its own symbols (globals
/// first), then other modules' exports and the host's symbols.
fn target_names(resolver: &Resolver<'_, '_, '_>) -> HashMap<Target, String> {
    let mut names: HashMap<Target, String> = HashMap::default();
    let graphs = resolver.graphs;
    let mut globals: Vec<_> = resolver.globals.iter().collect();
    globals.sort();
    for (name, (g, id)) in globals {
        if let Some(target) = exported_target(resolver, name, g, id) {
            names.entry(target).or_insert_with(|| name.to_string());
        }
    }
    for (g, graph) in graphs.iter().enumerate() {
        for sym in graph.symbols.iter().filter(|s| !s.name.is_empty()) {
            if let Some(target) = local_target(graph, g, sym) {
                names.entry(target).or_insert_with(|| sym.name.to_string());
            }
        }
    }
    let mut others: Vec<(&str, u64)> = resolver
        .req
        .exports
        .iter()
        .map(|(name, e)| (&**name, e.address))
        .chain(
            resolver
                .req
                .symbols
                .iter()
                .map(|(n, s)| (n.as_str(), s.address)),
        )
        .filter(|&(_, address)| address != 0)
        .collect();
    others.sort();
    for (name, address) in others {
        names
            .entry(Target::Address(address))
            .or_insert_with(|| name.to_string());
    }
    for (i, variable) in resolver.host_thread_locals.iter().enumerate() {
        names.insert(Target::HostThreadLocal(i), variable.name.to_string());
    }
    names
}

/// Where a symbol defined in a section of graph `g` is.
fn local_target(graph: &LinkGraph<'_>, g: usize, sym: &Symbol<'_>) -> Option<Target> {
    match sym.definition {
        Definition::Defined { section, offset } => {
            let section = section as SectionId;
            Some(match graph.sections[section].role {
                SectionRole::ThreadLocal => Target::ThreadLocal(g, section, offset),
                _ => Target::Section(g, section, offset),
            })
        }
        Definition::Absolute(a) => Some(Target::Address(a)),
        _ => None,
    }
}

fn sections(graphs: &[LinkGraph<'_>], at: &Addresses<'_>) -> Vec<MapSection> {
    let mut sections = Vec::new();
    for (g, graph) in graphs.iter().enumerate() {
        for (s, section) in graph.sections.iter().enumerate() {
            if let Some(Some(offset)) = at.layout.sections[g].get(s) {
                sections.push(MapSection {
                    object: graph.object.clone(),
                    name: section.name.to_string(),
                    address: at.base + offset,
                    size: section.size,
                    align: section.align,
                });
            }
        }
    }
    sections.sort_by_key(|s| s.address);
    sections
}

/// Every named symbol the load defines: the winning definition of each
/// global, and every local.
fn symbols(resolver: &Resolver<'_, '_, '_>, at: &Addresses<'_>) -> Vec<MapSymbol> {
    let mut symbols = Vec::new();
    for (g, graph) in resolver.graphs.iter().enumerate() {
        for (id, sym) in graph.symbols.iter().enumerate() {
            // Section and file names are not symbols a map reader wants.
            let file_name = sym.binding == Binding::Local
                && sym.kind == SymbolKind::Other
                && matches!(sym.definition, Definition::Absolute(_));
            if sym.name.is_empty() || sym.kind == SymbolKind::Section || file_name {
                continue;
            }
            let target = if sym.binding == Binding::Local {
                local_target(graph, g, sym)
            } else if resolver.globals.get(sym.name) == Some((g, id)) {
                exported_target(resolver, sym.name, g, id)
            } else {
                None
            };
            let Some(target) = target.filter(|t| placed(at, *t)) else {
                continue;
            };
            let (address, thread_local_offset) = if target.is_thread_local() {
                (None, Some(at.thread_local(target).offset))
            } else {
                (Some(at.of(target)), None)
            };
            symbols.push(MapSymbol {
                name: sym.name.to_string(),
                object: graph.object.clone(),
                address,
                thread_local_offset,
                size: sym.size,
                binding: match sym.binding {
                    Binding::Local => "local",
                    Binding::Global => "global",
                    Binding::Weak => "weak",
                },
                visibility: match sym.visibility {
                    Visibility::Default => "default",
                    Visibility::Protected => "protected",
                    Visibility::Hidden => "hidden",
                    Visibility::Internal => "internal",
                },
                kind: match sym.kind {
                    SymbolKind::Function => "function",
                    SymbolKind::Data => "data",
                    SymbolKind::ThreadLocal => "thread-local",
                    _ => "other",
                },
            });
        }
    }
    symbols.sort_by(|a, b| (a.address, &a.name).cmp(&(b.address, &b.name)));
    symbols
}

/// Whether the layout gave `target` a place (a discarded COMDAT section
/// has none).
fn placed(at: &Addresses<'_>, target: Target) -> bool {
    match target {
        Target::Section(g, s, _) => at.layout.sections[g].get(s).is_some_and(Option::is_some),
        Target::ThreadLocal(g, s, _) => at
            .layout
            .thread_locals
            .as_ref()
            .is_some_and(|block| block.offsets.contains_key(&(g, s))),
        _ => true,
    }
}

fn protection_name(protection: Protection) -> &'static str {
    match protection {
        Protection::Code => "r-x",
        Protection::ReadOnly => "r--",
        Protection::Data | Protection::Zero => "rw-",
    }
}

impl LinkMap {
    /// The map as text, one table per kind of entry.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let hex = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:#x}"));
        let name = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            out,
            "module {} at {:#x}, {:#x} bytes",
            self.module, self.base, self.size
        );
        let _ = writeln!(out, "segments:");
        for s in &self.segments {
            let _ = writeln!(out, "  {:#x} {:#x} {}", s.address, s.size, s.protection);
        }
        let _ = writeln!(out, "sections (address size align object section):");
        for s in &self.sections {
            let _ = writeln!(
                out,
                "  {:#x} {:#x} {} {} {}",
                s.address, s.size, s.align, s.object, s.name
            );
        }
        let _ = writeln!(
            out,
            "symbols (address size binding visibility kind name object):"
        );
        for s in &self.symbols {
            let address = match (s.address, s.thread_local_offset) {
                (Some(a), _) => format!("{a:#x}"),
                (None, Some(o)) => format!("tls+{o:#x}"),
                (None, None) => "-".to_string(),
            };
            let _ = writeln!(
                out,
                "  {address} {:#x} {} {} {} {} {}",
                s.size, s.binding, s.visibility, s.kind, s.name, s.object
            );
        }
        let _ = writeln!(out, "GOT (address value holds target):");
        for e in &self.got {
            let _ = writeln!(
                out,
                "  {:#x} {:#x} {} {}",
                e.address,
                e.value,
                e.holds,
                name(&e.target)
            );
        }
        let _ = writeln!(out, "stubs (address GOT-entry target):");
        for s in &self.stubs {
            let _ = writeln!(
                out,
                "  {:#x} {} {}",
                s.address,
                hex(Some(s.got_entry)),
                name(&s.target)
            );
        }
        let _ = writeln!(out, "archive members (member pulled-by):");
        for m in &self.members {
            let by = m
                .pulled_by
                .as_deref()
                .map_or("(whole archive)".to_string(), |b| format!("`{b}`"));
            let _ = writeln!(out, "  {} {by}", m.member);
        }
        out
    }
}
