//! The text of one synthetic program: each object as GNU assembly for
//! `as`, and `main.c`. Everything comes from a seeded generator, one
//! stream per object, so an object's text depends only on the shape and
//! its index (objects can be written in any order, in parallel).
//!
//! Object `sI` defines functions `sI_fJ` (global) and, every eighth one,
//! `sI_lJ` (file-local, a leaf), data `sI_dK` (8 bytes each, in `.data`)
//! and two pointer tables in `.data`: `sI_ftab` (functions) and `sI_dtab`
//! (data). A global function:
//!
//! - adds a constant, a datum of a random object read through the GOT
//!   (`R_X86_64_REX_GOTPCRELX`), a datum of another read PC-relative
//!   (`R_X86_64_PC32`), a byte inside its own string and one inside a
//!   string shared by every object (`R_X86_64_PC32` into the mergeable
//!   `.rodata.str1.1`, at an offset into the string);
//! - when its argument (a depth) is positive, calls one to three
//!   functions with the depth less one: in another object and in its own
//!   (`R_X86_64_PLT32` against global symbols), or a local leaf (resolved
//!   by `as`, no relocation);
//! - has its unwind table (`.cfi_*`, hence `.eh_frame` with one FDE per
//!   function and `R_X86_64_PC32` to the code).
//!
//! The tables hold absolute addresses (`R_X86_64_64`). `main` (C, from
//! `cc -O1`) calls root functions at a fixed depth, every entry of a few
//! objects' tables, prints the sum and returns it modulo 100, plus 1: the
//! depth bounds every call chain, so the program ends whatever the calls.

use std::fmt::Write as _;

/// Bump when the generated text changes in a way the shape does not say:
/// the cached objects are then made again.
pub(super) const VERSION: u32 = 1;

/// Data items per object.
const DATA: usize = 48;
/// Entries of each pointer table.
const TABLE: usize = 16;
/// Strings that every object carries identically (merged by the linker).
const SHARED_STRINGS: usize = 128;
/// Root calls in `main`, at depth [`DEPTH`].
const ROOTS: usize = 16;
const DEPTH: u32 = 5;
/// Objects whose tables `main` walks.
const TABLES_WALKED: usize = 8;
/// Every `LEAF_EVERY`-th function (index ≡ `LEAF_EVERY - 1`) is a local leaf.
const LEAF_EVERY: usize = 8;

const WORDS: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

/// What a program is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub seed: u64,
    /// Objects besides `main.o`.
    pub objects: usize,
    pub functions: usize,
}

impl Shape {
    /// Everything the generated files depend on, for the cache's stamp.
    pub fn stamp(&self) -> String {
        format!(
            "generator v{VERSION}: seed {}, {} objects x {} functions, {DATA} data, \
             {TABLE}-entry tables, {SHARED_STRINGS} shared strings, {ROOTS} roots at depth \
             {DEPTH}, {TABLES_WALKED} tables walked, a leaf every {LEAF_EVERY}",
            self.seed, self.objects, self.functions
        )
    }

    /// An object's file name.
    pub fn object_name(index: usize) -> String {
        format!("s{index:04}.o")
    }
}

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Picks symbols for one object's references.
struct Picker<'a> {
    shape: &'a Shape,
    rng: Rng,
}

impl Picker<'_> {
    /// A global function's index (never a leaf's).
    fn global_function(&mut self) -> usize {
        let j = self.rng.below(self.shape.functions);
        if is_leaf(j) { j - 1 } else { j }
    }

    /// An object other than `me` (itself when it is the only one).
    fn other_object(&mut self, me: usize) -> usize {
        let k = self.rng.below(self.shape.objects);
        if k == me && self.shape.objects > 1 {
            (k + 1) % self.shape.objects
        } else {
            k
        }
    }

    fn datum(&mut self) -> String {
        format!(
            "s{}_d{}",
            self.rng.below(self.shape.objects),
            self.rng.below(DATA)
        )
    }

    fn function(&mut self) -> String {
        let k = self.rng.below(self.shape.objects);
        format!("s{k}_f{}", self.global_function())
    }
}

fn is_leaf(j: usize) -> bool {
    j % LEAF_EVERY == LEAF_EVERY - 1
}

/// One object's sections as they are being written.
struct Object {
    index: usize,
    text: String,
    strings: String,
    shared_used: Vec<bool>,
}

/// The assembly of object `index` of `shape`.
pub(super) fn object(shape: &Shape, index: usize) -> String {
    let mut pick = Picker {
        shape,
        rng: Rng::new(shape.seed, index as u64 + 1),
    };
    let mut o = Object {
        index,
        text: format!("\t.file\t\"s{index:04}.s\"\n\t.text\n"),
        strings: String::from("\t.section\t.rodata.str1.1,\"aMS\",@progbits,1\n"),
        shared_used: vec![false; SHARED_STRINGS],
    };
    for j in 0..shape.functions {
        if is_leaf(j) {
            leaf(&mut o, &mut pick, j);
        } else {
            global(&mut o, &mut pick, j);
        }
    }
    for (h, used) in o.shared_used.iter().enumerate() {
        if *used {
            let _ = writeln!(o.strings, ".LH{h}:\n\t.string\t\"{}\"", shared_string(h));
        }
    }
    let data = data(&mut pick, index);
    format!(
        "{}{}{data}\t.section\t.note.GNU-stack,\"\",@progbits\n",
        o.text, o.strings
    )
}

/// Shared string `h`: the same text in every object.
fn shared_string(h: usize) -> String {
    format!(
        "shared message {h}: {} {} {}",
        WORDS[h % 16],
        WORDS[(h / 16) % 16],
        WORDS[(h * 7) % 16]
    )
}

/// Function `j`'s own string; returns its label and a byte offset into it.
fn unique_string(o: &mut Object, pick: &mut Picker<'_>, j: usize) -> (String, usize) {
    let mut text = format!("s{}_f{j}:", o.index);
    for _ in 0..2 + pick.rng.below(7) {
        text.push(' ');
        text.push_str(WORDS[pick.rng.below(WORDS.len())]);
    }
    let label = format!(".LU{j}");
    let _ = writeln!(o.strings, "{label}:\n\t.string\t\"{text}\"");
    (label, pick.rng.below(text.len()))
}

/// A shared string's label and an offset into it, marking it used.
fn shared(o: &mut Object, pick: &mut Picker<'_>) -> (String, usize) {
    let h = pick.rng.below(SHARED_STRINGS);
    o.shared_used[h] = true;
    (format!(".LH{h}"), pick.rng.below(shared_string(h).len()))
}

/// A file-local leaf: constant + depth + a datum (PC-relative) + a byte of
/// its string.
fn leaf(o: &mut Object, pick: &mut Picker<'_>, j: usize) {
    let name = format!("s{}_l{j}", o.index);
    let constant = pick.rng.below(100_000);
    let datum = pick.datum();
    let (string, offset) = unique_string(o, pick, j);
    let _ = write!(
        o.text,
        "\t.type\t{name}, @function\n{name}:\n\t.cfi_startproc\n\
         \tleaq\t{constant}(%rdi), %rax\n\
         \taddq\t{datum}(%rip), %rax\n\
         \tmovzbl\t{string}+{offset}(%rip), %ecx\n\
         \taddq\t%rcx, %rax\n\
         \tret\n\t.cfi_endproc\n\t.size\t{name}, .-{name}\n"
    );
}

/// The callees of global function `j` of object `me`.
fn callees(pick: &mut Picker<'_>, me: usize, j: usize) -> Vec<String> {
    let functions = pick.shape.functions;
    (0..1 + pick.rng.below(3))
        .map(|_| match pick.rng.below(3) {
            0 => format!("s{}_f{}", pick.other_object(me), pick.global_function()),
            1 => format!("s{me}_f{}", pick.global_function()),
            _ => {
                let leaves = functions / LEAF_EVERY;
                if leaves == 0 {
                    format!("s{me}_f{}", pick.global_function())
                } else {
                    let q = (j + pick.rng.below(leaves)) % leaves;
                    format!("s{me}_l{}", q * LEAF_EVERY + LEAF_EVERY - 1)
                }
            }
        })
        .collect()
}

/// A global function: see the module's documentation.
fn global(o: &mut Object, pick: &mut Picker<'_>, j: usize) {
    let me = o.index;
    let name = format!("s{me}_f{j}");
    let constant = pick.rng.below(100_000);
    let got_datum = pick.datum();
    let pc_datum = pick.datum();
    let (own, own_offset) = unique_string(o, pick, j);
    let (common, common_offset) = shared(o, pick);
    let calls = callees(pick, me, j);
    let t = &mut o.text;
    let _ = write!(
        t,
        "\t.globl\t{name}\n\t.type\t{name}, @function\n{name}:\n\t.cfi_startproc\n\
         \tpushq\t%rbx\n\t.cfi_def_cfa_offset 16\n\t.cfi_offset 3, -16\n\
         \tpushq\t%r12\n\t.cfi_def_cfa_offset 24\n\t.cfi_offset 12, -24\n\
         \tsubq\t$8, %rsp\n\t.cfi_def_cfa_offset 32\n\
         \tmovq\t%rdi, %r12\n\
         \tmovl\t${constant}, %ebx\n\
         \tmovq\t{got_datum}@GOTPCREL(%rip), %rax\n\taddq\t(%rax), %rbx\n\
         \taddq\t{pc_datum}(%rip), %rbx\n\
         \tmovzbl\t{own}+{own_offset}(%rip), %eax\n\taddq\t%rax, %rbx\n\
         \tmovzbl\t{common}+{common_offset}(%rip), %eax\n\taddq\t%rax, %rbx\n\
         \ttestq\t%r12, %r12\n\tjle\t.LR{j}\n"
    );
    for callee in calls {
        let _ = write!(
            t,
            "\tleaq\t-1(%r12), %rdi\n\tcall\t{callee}\n\taddq\t%rax, %rbx\n"
        );
    }
    let _ = write!(
        t,
        ".LR{j}:\n\tmovq\t%rbx, %rax\n\
         \taddq\t$8, %rsp\n\t.cfi_def_cfa_offset 24\n\
         \tpopq\t%r12\n\t.cfi_def_cfa_offset 16\n\
         \tpopq\t%rbx\n\t.cfi_def_cfa_offset 8\n\
         \tret\n\t.cfi_endproc\n\t.size\t{name}, .-{name}\n"
    );
}

/// Object `index`'s `.data`: its data items and its two pointer tables.
fn data(pick: &mut Picker<'_>, index: usize) -> String {
    let mut out = String::from("\t.data\n\t.align 8\n");
    for k in 0..DATA {
        let name = format!("s{index}_d{k}");
        let _ = write!(
            out,
            "\t.globl\t{name}\n\t.type\t{name}, @object\n\t.size\t{name}, 8\n{name}:\n\
             \t.quad\t{}\n",
            pick.rng.below(1000)
        );
    }
    for (table, function) in [("ftab", true), ("dtab", false)] {
        let name = format!("s{index}_{table}");
        let _ = write!(
            out,
            "\t.globl\t{name}\n\t.type\t{name}, @object\n\t.size\t{name}, {}\n{name}:\n",
            8 * TABLE
        );
        for _ in 0..TABLE {
            let target = if function {
                pick.function()
            } else {
                pick.datum()
            };
            let _ = writeln!(out, "\t.quad\t{target}");
        }
    }
    out
}

/// `main.c`: root calls, table walks, the sum printed and returned.
pub(super) fn main_c(shape: &Shape) -> String {
    let mut pick = Picker {
        shape,
        rng: Rng::new(shape.seed, 0),
    };
    let roots: Vec<String> = (0..ROOTS).map(|_| pick.function()).collect();
    let walked: Vec<usize> = (0..TABLES_WALKED.min(shape.objects))
        .map(|_| pick.rng.below(shape.objects))
        .collect();
    let mut out = String::from("#include <stdio.h>\n\n");
    for root in &roots {
        let _ = writeln!(out, "extern long {root}(long);");
    }
    for k in &walked {
        let _ = writeln!(
            out,
            "extern long (*s{k}_ftab[{TABLE}])(long);\nextern long *s{k}_dtab[{TABLE}];"
        );
    }
    out += "\nint main(void) {\n\tunsigned long total = 0;\n";
    for root in &roots {
        let _ = writeln!(out, "\ttotal += {root}({DEPTH});");
    }
    for k in &walked {
        let _ = writeln!(
            out,
            "\tfor (int e = 0; e < {TABLE}; e++)\n\t\ttotal += s{k}_ftab[e](2) + *s{k}_dtab[e];"
        );
    }
    out += "\tprintf(\"scaling: %lu\\n\", total);\n\treturn (int)(total % 100) + 1;\n}\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        seed: 7,
        objects: 3,
        functions: 20,
    };

    #[test]
    fn same_shape_same_text() {
        assert_eq!(object(&SHAPE, 1), object(&SHAPE, 1));
        assert_ne!(object(&SHAPE, 1), object(&SHAPE, 2));
        assert_eq!(main_c(&SHAPE), main_c(&SHAPE));
    }

    #[test]
    fn references_stay_inside_the_program() {
        let text = object(&SHAPE, 0);
        assert!(text.contains("@GOTPCREL(%rip)"));
        assert!(text.contains(".rodata.str1.1"));
        assert!(text.contains(".cfi_startproc"));
        assert!(!text.contains("s3_"), "object 3 does not exist");
    }
}
