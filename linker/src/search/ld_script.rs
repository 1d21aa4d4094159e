//! The GNU ld scripts that stand in for a library: a `libNAME.so` that is
//! text, naming the files to link instead. The C library installs them
//! (`libc.so`, `libm.so`), as do other packages that split one library in
//! two: `GROUP ( /lib/x86_64-linux-gnu/libm.so.6 AS_NEEDED (
//! /lib/x86_64-linux-gnu/libmvec.so.1 ) )`.
//!
//! Only what such a script says is read: `GROUP`, `INPUT` and `AS_NEEDED`
//! lists of files and `-lNAME`s, and `OUTPUT_FORMAT` / `OUTPUT_ARCH`, which
//! a JIT link has no use for. Any other command is refused by name: a
//! script that lays out sections is not a library.

use std::path::{Path, PathBuf};

/// The most of a script that is read: the ones libraries install are a
/// few hundred bytes.
pub const MAX_SCRIPT_BYTES: u64 = 64 << 10;

/// One file a script names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptInput {
    /// A path (absolute, or relative to the script's directory).
    File(PathBuf),
    /// `-lNAME`: searched for as `-l NAME` is.
    Library(String),
}

/// Whether `bytes` (a file's first bytes) look like a linker script rather
/// than a binary: text that starts with a comment or a command word.
pub fn looks_like_script(bytes: &[u8]) -> bool {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // Cut in the middle of a character: what came before decides.
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    let start = text.trim_start();
    start.starts_with("/*")
        || ["GROUP", "INPUT", "OUTPUT_FORMAT", "OUTPUT_ARCH"]
            .iter()
            .any(|command| start.starts_with(command))
}

/// The files `text` (the script at `script`) names, in order; an error
/// says what in it is not understood.
pub fn inputs(text: &str, script: &Path) -> Result<Vec<ScriptInput>, String> {
    let tokens = tokens(text)?;
    let mut inputs = Vec::new();
    let mut at = 0;
    while let Some(&command) = tokens.get(at) {
        if !matches!(command, "GROUP" | "INPUT" | "OUTPUT_FORMAT" | "OUTPUT_ARCH") {
            return Err(format!(
                "`{command}` is not a command a library's script has"
            ));
        }
        let (arguments, next) = parenthesized(&tokens, at + 1, command)?;
        if matches!(command, "GROUP" | "INPUT") {
            list(arguments, script, &mut inputs)?;
        }
        at = next;
    }
    Ok(inputs)
}

/// The words and parentheses of `text`, comments dropped. Commas separate
/// like blanks.
fn tokens(text: &str) -> Result<Vec<&str>, String> {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(tokens);
        }
        if let Some(comment) = rest.strip_prefix("/*") {
            let end = comment.find("*/").ok_or("a comment is not closed")?;
            rest = &comment[end + 2..];
        } else if rest.starts_with(['(', ')']) {
            tokens.push(&rest[..1]);
            rest = &rest[1..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ','))
                .unwrap_or(rest.len());
            tokens.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
}

/// The tokens between the `(` at `open` and its `)`, and the index after
/// the `)`.
fn parenthesized<'t>(
    tokens: &'t [&'t str],
    open: usize,
    command: &str,
) -> Result<(&'t [&'t str], usize), String> {
    if tokens.get(open) != Some(&"(") {
        return Err(format!("`{command}` is not followed by `(`"));
    }
    let mut depth = 0usize;
    for (i, &token) in tokens.iter().enumerate().skip(open) {
        match token {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&tokens[open + 1..i], i + 1));
                }
            }
            _ => {}
        }
    }
    Err(format!("`{command} (` is not closed"))
}

/// The files of a `GROUP` or `INPUT` list (`AS_NEEDED` lists within it
/// count as files to link: a library opened for lookups costs nothing it
/// is not asked for).
fn list(arguments: &[&str], script: &Path, inputs: &mut Vec<ScriptInput>) -> Result<(), String> {
    let mut at = 0;
    while let Some(&word) = arguments.get(at) {
        match word {
            "AS_NEEDED" => {
                let (inner, next) = parenthesized(arguments, at + 1, word)?;
                list(inner, script, inputs)?;
                at = next;
                continue;
            }
            "(" | ")" => return Err(format!("an unexpected `{word}`")),
            _ => inputs.push(input(word, script)?),
        }
        at += 1;
    }
    Ok(())
}

fn input(word: &str, script: &Path) -> Result<ScriptInput, String> {
    if let Some(name) = word.strip_prefix("-l") {
        return Ok(ScriptInput::Library(name.to_string()));
    }
    if word.starts_with('=') || word.starts_with("$SYSROOT") {
        return Err(format!(
            "`{word}` is relative to a sysroot, which a JIT link has none of"
        ));
    }
    let path = Path::new(word);
    Ok(ScriptInput::File(if path.is_absolute() {
        path.to_path_buf()
    } else {
        script.parent().unwrap_or(Path::new(".")).join(path)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "rerun: cargo test -p solder-linker --lib search::ld_script::tests";

    fn file(path: &str) -> ScriptInput {
        ScriptInput::File(PathBuf::from(path))
    }

    /// The C library's `libc.so` and `libm.so`, as glibc installs them.
    #[test]
    fn the_c_librarys_scripts_name_their_files_in_order() {
        let libc = "/* GNU ld script\n   Use the shared library, but some functions are only in\n   \
                    the static library, so try that secondarily.  */\n\
                    OUTPUT_FORMAT(elf64-x86-64)\n\
                    GROUP ( /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libc_nonshared.a  \
                    AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )\n";
        assert!(looks_like_script(libc.as_bytes()), "{RERUN}");
        assert_eq!(
            inputs(libc, Path::new("/usr/lib/x86_64-linux-gnu/libc.so")),
            Ok(vec![
                file("/lib/x86_64-linux-gnu/libc.so.6"),
                file("/usr/lib/x86_64-linux-gnu/libc_nonshared.a"),
                file("/lib64/ld-linux-x86-64.so.2"),
            ]),
            "{RERUN}"
        );
        let libm = "INPUT(libm.so.6, -lmvec)";
        assert_eq!(
            inputs(libm, Path::new("/opt/lib/libm.so")),
            Ok(vec![
                file("/opt/lib/libm.so.6"),
                ScriptInput::Library("mvec".into())
            ]),
            "{RERUN}"
        );
    }

    /// Binaries are not scripts; scripts that are not a library's are
    /// refused, naming what is not understood.
    #[test]
    fn what_is_not_a_librarys_script_is_refused_by_name() {
        for binary in [
            &b"\x7fELF\x02\x01"[..],
            b"!<arch>\n",
            b"\xcf\xfa\xed\xfe",
            b"",
        ] {
            assert!(!looks_like_script(binary), "{binary:?}\n{RERUN}");
        }
        let script = Path::new("/x/libx.so");
        for (text, says) in [
            ("SECTIONS { . = 0x1000; }", "`SECTIONS`"),
            ("GROUP ( /a.so", "not closed"),
            ("GROUP /a.so", "not followed by `(`"),
            ("/* open comment", "comment is not closed"),
            ("GROUP ( =/usr/lib/a.so )", "sysroot"),
            ("INPUT ( AS_NEEDED /a.so )", "`AS_NEEDED` is not followed"),
        ] {
            let err = inputs(text, script).expect_err(text);
            assert!(err.contains(says), "{text}: {err}\n{RERUN}");
        }
    }
}
