//! Responses as flat `path -> value` maps, so two brokers' answers can be
//! diffed field by field for any API without per-API code.
//!
//! The kafka-protocol crate derives `Debug` for every message, so a decoded
//! response's `{:?}` text is parsed back into a tree (structs, lists, maps,
//! strings, atoms) and flattened: `topics[0].partitions[1].error_code -> 3`.
//! `Some(x)` and one-field newtypes (`TopicName("t")`) collapse to `x`, so a
//! null shows as `None` and an empty string as `""`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// One response (or several, one per probe label) flattened.
pub type Flat = BTreeMap<String, String>;

/// Flattens the `Debug` text of a value under `prefix`.
pub fn flatten_debug(prefix: &str, debug: &str, into: &mut Flat) -> Result<()> {
    let mut parser = Parser { text: debug.as_bytes(), pos: 0 };
    let node = parser.value()?;
    parser.skip_ws();
    if parser.pos != parser.text.len() {
        bail!("trailing text at byte {} of {debug:.200}", parser.pos);
    }
    flatten(prefix, &node, into);
    Ok(())
}

enum Node {
    Leaf(String),
    /// Struct fields or map entries, in order.
    Fields(Vec<(String, Node)>),
    List(Vec<Node>),
}

fn flatten(path: &str, node: &Node, into: &mut Flat) {
    match node {
        Node::Leaf(value) => {
            into.insert(path.to_string(), value.clone());
        }
        Node::Fields(fields) => {
            if fields.is_empty() {
                into.insert(path.to_string(), "{}".to_string());
            }
            for (name, child) in fields {
                // Tagged fields neither broker knows are not part of the answer.
                if name == "unknown_tagged_fields" {
                    continue;
                }
                let child_path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                flatten(&child_path, child, into);
            }
        }
        Node::List(items) => {
            into.insert(format!("{path}.len"), items.len().to_string());
            for (i, child) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), child, into);
            }
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() != Some(byte) {
            bail!("expected '{}' at byte {}", byte as char, self.pos);
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Node> {
        match self.peek() {
            None => bail!("unexpected end of Debug text"),
            Some(b'"') => Ok(Node::Leaf(self.string()?)),
            Some(b'[') => self.list(),
            Some(b'(') => {
                // A bare tuple: compared like a list.
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b')') {
                    items.push(self.value()?);
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                    }
                }
                self.pos += 1;
                Ok(Node::List(items))
            }
            Some(b'{') => Ok(Node::Fields(self.fields()?)),
            Some(b'b') if self.text.get(self.pos + 1) == Some(&b'"') => {
                self.pos += 1;
                Ok(Node::Leaf(format!("b{}", self.string()?)))
            }
            Some(_) => {
                let atom = self.atom();
                if atom.is_empty() {
                    bail!("unexpected '{}' at byte {}", self.text[self.pos] as char, self.pos);
                }
                match self.peek() {
                    Some(b'{') => Ok(Node::Fields(self.fields()?)),
                    Some(b'(') => {
                        self.pos += 1;
                        let mut items = Vec::new();
                        while self.peek() != Some(b')') {
                            items.push(self.value()?);
                            if self.peek() == Some(b',') {
                                self.pos += 1;
                            }
                        }
                        self.pos += 1;
                        // Some(x), TopicName(x), BrokerId(x): the wrapper says nothing.
                        if items.len() == 1 {
                            Ok(items.pop().expect("one item"))
                        } else {
                            Ok(Node::List(items))
                        }
                    }
                    _ => Ok(Node::Leaf(atom)),
                }
            }
        }
    }

    fn atom(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while let Some(&c) = self.text.get(self.pos) {
            if c.is_ascii_whitespace() || b",:{}[]()\"".contains(&c) {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
    }

    /// A quoted string, kept with its quotes and escapes as Debug wrote it.
    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let start = self.pos - 1;
        while let Some(&c) = self.text.get(self.pos) {
            self.pos += 1;
            match c {
                b'\\' => self.pos += 1,
                b'"' => return Ok(String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()),
                _ => {}
            }
        }
        bail!("unterminated string")
    }

    fn list(&mut self) -> Result<Node> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        while self.peek() != Some(b']') {
            items.push(self.value()?);
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
        self.pos += 1;
        Ok(Node::List(items))
    }

    /// `{ name: value, ... }` (a struct body) or `{key: value}` (a map).
    fn fields(&mut self) -> Result<Vec<(String, Node)>> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        while self.peek() != Some(b'}') {
            let name = match self.peek() {
                Some(b'"') => self.string()?,
                _ => self.atom(),
            };
            if name.is_empty() {
                bail!("expected a field name at byte {}", self.pos);
            }
            self.expect(b':')?;
            fields.push((name, self.value()?));
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
        self.pos += 1;
        Ok(fields)
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut star_t) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            star_t = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            star_t += 1;
            ti = star_t;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Inner {
        name: Option<String>,
        code: i16,
        ids: Vec<i32>,
    }

    #[derive(Debug)]
    struct Outer {
        inner: Vec<Inner>,
        message: Option<String>,
        raw: Option<Vec<u8>>,
        tags: BTreeMap<i32, String>,
    }

    #[test]
    fn flattens_nested_debug_output() {
        let value = Outer {
            inner: vec![Inner { name: Some("a \"q\" b".into()), code: -1, ids: vec![1, 2] }],
            message: None,
            raw: Some(vec![]),
            tags: BTreeMap::from([(3, "x".to_string())]),
        };
        let mut flat = Flat::new();
        flatten_debug("r", &format!("{value:?}"), &mut flat).unwrap();
        assert_eq!(flat["r.inner.len"], "1");
        assert_eq!(flat["r.inner[0].name"], r#""a \"q\" b""#);
        assert_eq!(flat["r.inner[0].code"], "-1");
        assert_eq!(flat["r.inner[0].ids[1]"], "2");
        assert_eq!(flat["r.message"], "None");
        assert_eq!(flat["r.raw.len"], "0");
        assert_eq!(flat["r.tags.3"], "\"x\"");
    }

    #[test]
    fn tuples_are_lists() {
        let mut flat = Flat::new();
        flatten_debug("t", &format!("{:?}", (0i16, Some(1), "x")), &mut flat).unwrap();
        assert_eq!(flat["t.len"], "3");
        assert_eq!(flat["t[1]"], "1");
        assert_eq!(flat["t[2]"], "\"x\"");
    }

    #[test]
    fn rejects_truncated_text() {
        let mut flat = Flat::new();
        assert!(flatten_debug("r", "Outer { a: [1, 2", &mut flat).is_err());
    }

    #[test]
    fn glob() {
        assert!(glob_match("*.error_message", "probe.topics[0].error_message"));
        assert!(glob_match("probe.topics[*].partitions[*].leader_id", "probe.topics[0].partitions[11].leader_id"));
        assert!(!glob_match("*.error_message", "probe.topics[0].error_code"));
        assert!(glob_match("*", "anything"));
    }
}
