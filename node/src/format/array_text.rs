//! The items of an array as ClickHouse writes it in text formats (`[1,NULL,3]`,
//! `['a','b\'c']`, nested `[[1],[]]`): split one at a time, quoted items unescaped. The
//! cells of `cells` parse each item's text for the item type.
//! Invariant: a quote or bracket inside a quoted item never ends the item or the array.

use std::borrow::Cow;

pub enum ArrayItem<'a> {
    Null,
    Text(Cow<'a, str>),
}

/// The first item of an array's inside, and what follows it.
pub fn split_array_item(s: &str) -> Option<(ArrayItem<'_>, &str)> {
    let b = s.as_bytes();
    match b.first()? {
        b'\'' => {
            let (text, used) = unquote_single(s)?;
            Some((ArrayItem::Text(text), &s[used..]))
        }
        b'[' => {
            // A nested array: up to its matching bracket, quotes respected.
            let mut depth = 0usize;
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'[' => depth += 1,
                    b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some((ArrayItem::Text(Cow::Borrowed(&s[..=i])), &s[i + 1..]));
                        }
                    }
                    b'\'' => i += unquote_single(&s[i..])?.1 - 1,
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let end = s.find(',').unwrap_or(s.len());
            let token = s[..end].trim();
            let item = if token == "NULL" {
                ArrayItem::Null
            } else {
                ArrayItem::Text(Cow::Borrowed(token))
            };
            Some((item, &s[end..]))
        }
    }
}

/// A `'...'` string with backslash escapes: its text and the bytes it used.
fn unquote_single(s: &str) -> Option<(Cow<'_, str>, usize)> {
    let body = s.strip_prefix('\'')?;
    let close = body.find(['\'', '\\'])?;
    if body.as_bytes()[close] == b'\'' {
        return Some((Cow::Borrowed(&body[..close]), close + 2));
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => return Some((Cow::Owned(out), i + 2)),
            '\\' => {
                let (_, e) = chars.next()?;
                super::tsv::push_unescaped(&mut out, e);
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item of an array's inside, `None` standing for NULL.
    fn items(mut s: &str) -> Option<Vec<Option<String>>> {
        let mut out = Vec::new();
        while !s.is_empty() {
            let (item, rest) = split_array_item(s)?;
            out.push(match item {
                ArrayItem::Null => None,
                ArrayItem::Text(t) => Some(t.into_owned()),
            });
            s = rest.trim_start();
            s = s.strip_prefix(',').map_or(s, str::trim_start);
        }
        Some(out)
    }

    #[test]
    fn quoted_items_keep_their_commas_brackets_and_escapes() {
        let got = items(r"'a,b',NULL,'c\'d]','e\\',[1,'],'],7");
        assert_eq!(
            got,
            Some(vec![
                Some("a,b".into()),
                None,
                Some("c'd]".into()),
                Some("e\\".into()),
                Some("[1,'],']".into()),
                Some("7".into()),
            ])
        );
        assert_eq!(items("'open"), None);
        assert_eq!(items("[1,[2]"), None);
    }
}
