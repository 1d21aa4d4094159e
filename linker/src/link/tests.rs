//! The portable core end to end: a real object linked into a byte image
//! with no executor behind it (the host layer may be compiled out), and the
//! image's relocated bytes checked against the addresses the link chose.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;
use solder_executor::abi::CallingConvention;
use solder_executor::module::Finalizers;
use solder_executor::protocol::{PlacementCode, SymbolInfo};

use super::{LinkRequest, link};
use crate::error::LinkError;
use crate::executors::{Executor, Outcome};
use crate::graph::Protection;
use crate::indirection::Indirection;
use crate::input::parse_object;
use crate::memory::Slab;
use crate::test_support::clang_object;

/// An executor that is nowhere: the link must stage its image (memory is
/// not writable in place) and ask for nothing else.
struct Nowhere;

fn not_here() -> LinkError {
    LinkError::Memory("this test links into a byte image only".into())
}

impl Executor for Nowhere {
    fn page_size(&self) -> u64 {
        4096
    }
    fn reserve(&mut self, _: u64, _: PlacementCode, _: u64) -> Result<u64, LinkError> {
        Err(not_here())
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn protect(&mut self, _: u64, _: u64, _: Protection) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn patch(&mut self, _: u64, _: &[u8], _: Protection) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn release(&mut self, _: u64, _: u64) -> Result<(), LinkError> {
        Ok(())
    }
    fn read(&mut self, _: u64, _: u64) -> Result<Vec<u8>, LinkError> {
        Err(not_here())
    }
    fn lookup(&mut self, _: &[String]) -> Result<Vec<SymbolInfo>, LinkError> {
        Err(not_here())
    }
    fn link_library(&mut self, _: &str) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn preload(&mut self, _: &str) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn register_frames(&mut self, _: u64) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn deregister_frames(&mut self, _: u64) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn register_module(
        &mut self,
        _: u64,
        _: &Finalizers,
        _: Option<usize>,
    ) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn set_args(&mut self, _: &[String]) -> Result<(), LinkError> {
        Err(not_here())
    }
    fn run_initializers(&mut self, _: &[u64], _: CallingConvention) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn call(
        &mut self,
        _: u64,
        _: [u64; 6],
        _: bool,
        _: CallingConvention,
        _: Option<Duration>,
    ) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn remove_module(&mut self, _: u64) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn end_modules(&mut self, _: &[u64]) -> Result<Outcome, LinkError> {
        Err(not_here())
    }
    fn describe(&self) -> String {
        "nowhere".into()
    }
}

const SOURCE: &str = r#"
    .text
    .globl f, g
f:  call g
    movabsq $table, %rax
    ret
g:  ret
    .data
    .globl table
table:
    .quad f
    .long g - .
"#;

fn word<const N: usize>(image: &[u8], at: u64) -> [u8; N] {
    let at = at as usize;
    image[at..at + N].try_into().expect("inside the image")
}

#[test]
fn an_elf_object_links_into_a_relocated_byte_image() {
    let bytes = clang_object("x86_64-unknown-linux-gnu", "assembler", SOURCE, &[]);
    let graph = parse_object("calls.o", &bytes).expect("parse");
    let kinds: Vec<_> = graph
        .sections
        .iter()
        .flat_map(|s| &s.edges)
        .map(|e| (e.kind.op, e.kind.width))
        .collect();
    assert_eq!(
        kinds.len(),
        4,
        "the object has the four relocations: {kinds:?}"
    );
    let base = 0x5555_0000_0000;
    let mut slab = Slab::new(base, 1 << 30, 4096);
    let linked = link(
        vec![graph],
        LinkRequest {
            module: 1,
            objects: Arc::from("calls.o"),
            slab: &mut slab,
            symbols: &HashMap::default(),
            executor: &mut Nowhere,
            exports: &HashMap::default(),
            indirection: &mut Indirection::default(),
            replacing: None,
        },
    )
    .expect("link");
    assert_eq!(
        linked.memory.0, base,
        "the first allocation starts the slab"
    );
    let address = |name: &str| {
        linked
            .exports
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("`{name}` is exported"))
            .1
            .address
    };
    let (f, g, table) = (address("f"), address("g"), address("table"));
    assert_eq!(g, f + 16, "call (5) + movabs (10) + ret (1)");
    let image = &linked.image;
    // call g: rel32 from the end of the call.
    assert_eq!(word::<1>(image, f - base), [0xe8]);
    assert_eq!(
        i32::from_le_bytes(word(image, f - base + 1)) as i64,
        g as i64 - (f as i64 + 5)
    );
    // movabs $table: the absolute address.
    assert_eq!(u64::from_le_bytes(word(image, f - base + 7)), table);
    // .quad f, then .long g - . (PC-relative from the field itself).
    assert_eq!(u64::from_le_bytes(word(image, table - base)), f);
    assert_eq!(
        i32::from_le_bytes(word(image, table - base + 8)) as i64,
        g as i64 - (table as i64 + 8)
    );
}
