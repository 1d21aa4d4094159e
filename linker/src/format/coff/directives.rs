//! Linker directives (`.drectve`): `/alternatename:A=B` makes B stand in
//! for an undefined A (a [`Symbol::fallback`]); other directives are
//! ignored.

use object::read::coff::CoffHeader;
use rustc_hash::FxHashMap as HashMap;

use super::Input;
use crate::error::LinkError;
use crate::format::ObjectErrors;
use crate::graph::*;

/// Applies the `/alternatename:` directives of every `.drectve` section.
/// A stand-in no object symbol names is added after the table's symbols.
pub(super) fn apply<'a, Coff: CoffHeader>(
    input: &Input<'_, 'a, Coff>,
    directives: &[&'a [u8]],
    symbols: &mut Vec<Symbol<'a>>,
) -> Result<(), LinkError> {
    // Non-local symbols by name, in table order: each directive looks its
    // two names up once instead of scanning every symbol.
    let mut by_name: HashMap<&'a str, Vec<usize>> = HashMap::default();
    for (id, sym) in symbols.iter().enumerate() {
        if sym.binding != Binding::Local {
            by_name.entry(sym.name).or_default().push(id);
        }
    }
    for &bytes in directives {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes)
            .map_err(|_| input.malformed("section .drectve: directives are not UTF-8".into()))?;
        for token in directive_tokens(text) {
            let Some((from, to)) = alternate_name(token)
                .map_err(|why| input.malformed(format!("section .drectve: {token}: {why}")))?
            else {
                continue;
            };
            let undefined =
                |s: &Symbol<'_>| s.definition == Definition::Undefined && s.fallback.is_none();
            let named = by_name.get(from).map_or(&[][..], Vec::as_slice);
            if from == to || !named.iter().any(|&id| undefined(&symbols[id])) {
                continue;
            }
            let target = match by_name.get(to).and_then(|ids| ids.first()) {
                Some(&id) => id,
                None => {
                    by_name.entry(to).or_default().push(symbols.len());
                    symbols.push(Symbol {
                        name: to,
                        binding: Binding::Global,
                        visibility: Visibility::Default,
                        kind: SymbolKind::Other,
                        definition: Definition::Undefined,
                        size: 0,
                        fallback: None,
                    });
                    symbols.len() - 1
                }
            };
            let target = super::symbols::fallback_to(input, target)?;
            for &id in by_name.get(from).map_or(&[][..], Vec::as_slice) {
                if undefined(&symbols[id]) {
                    symbols[id].fallback = Some(target);
                }
            }
        }
    }

    Ok(())
}

/// Splits `.drectve` text into arguments: separated by white space, where
/// double quotes protect white space. Quotes stay in the arguments.
pub(super) fn directive_tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        let space = (c.is_ascii_whitespace() || c == '\0') && !quoted;
        if c == '"' {
            quoted = !quoted;
        }
        match (start, space) {
            (None, false) => start = Some(at),
            (Some(from), true) => {
                tokens.push(&text[from..at]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        tokens.push(&text[from..]);
    }
    tokens
}

/// `(A, B)` when `token` is `/alternatename:A=B` (or `-ALTERNATENAME:` and
/// so on; A, B or `A=B` may be quoted); `None` for other directives.
pub(super) fn alternate_name(token: &str) -> Result<Option<(&str, &str)>, String> {
    const OPTION: &str = "alternatename:";
    let token = unquote(token).unwrap_or(token);
    let Some(option) = token.strip_prefix(['/', '-']) else {
        return Ok(None);
    };
    if !option
        .get(..OPTION.len())
        .is_some_and(|o| o.eq_ignore_ascii_case(OPTION))
    {
        return Ok(None);
    }
    let value = &option[OPTION.len()..];
    let value = unquote(value).unwrap_or(value);
    let names = value.split_once('=').and_then(|(from, to)| {
        let from = unquote(from).unwrap_or(from);
        let to = unquote(to).unwrap_or(to);
        let plain = |s: &str| !s.is_empty() && !s.contains('"');
        (plain(from) && plain(to)).then_some((from, to))
    });
    names
        .map(Some)
        .ok_or_else(|| "expected /alternatename:FROM=TO".to_string())
}

/// `s` without surrounding double quotes, if it has them.
fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('"')?
        .strip_suffix('"')
        .filter(|inner| !inner.contains('"'))
}
