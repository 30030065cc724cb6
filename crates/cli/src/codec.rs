//! How `produce` reads and `consume` writes record bytes: as they are, as
//! base64 or hex text, or length-prefixed binary. No format loses a byte.

use std::io::{self, Read, Write};

use anyhow::{anyhow, bail, Result};
use ::base64::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Bytes as they are (lines / delimited records on input).
    Text,
    /// consume only: one JSON object per record.
    Json,
    Base64,
    Hex,
    /// i32 big-endian length (-1 = null) then the bytes: key, then value.
    Raw,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format> {
        Ok(match name {
            "text" => Format::Text,
            "json" => Format::Json,
            "base64" => Format::Base64,
            "hex" => Format::Hex,
            "raw" => Format::Raw,
            other => bail!("unknown format {other:?}: expected text, json, base64, hex or raw"),
        })
    }

    /// Decodes one text field of input in this format.
    pub fn decode(self, field: &[u8]) -> Result<Vec<u8>> {
        match self {
            Format::Base64 => ::base64::engine::general_purpose::STANDARD
                .decode(field.trim_ascii())
                .map_err(|e| anyhow!("invalid base64 {:?}: {e}", String::from_utf8_lossy(field))),
            Format::Hex => decode_hex(field.trim_ascii()),
            _ => Ok(field.to_vec()),
        }
    }
}

pub fn encode_base64(bytes: &[u8]) -> String {
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_hex(text: &[u8]) -> Result<Vec<u8>> {
    if text.len() % 2 != 0 {
        bail!("invalid hex {:?}: odd number of digits", String::from_utf8_lossy(text));
    }
    text.chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| anyhow!("invalid hex {:?}", String::from_utf8_lossy(text)))
        })
        .collect()
}

/// A field for a text-like line: encoded per format; a null shows as `null`
/// in base64/hex (never valid there) and as nothing in text.
pub fn encode_or_null(format: Format, bytes: Option<&[u8]>) -> Vec<u8> {
    match (format, bytes) {
        (Format::Base64, Some(b)) => encode_base64(b).into_bytes(),
        (Format::Hex, Some(b)) => hex(b).into_bytes(),
        (Format::Base64 | Format::Hex, None) => b"null".to_vec(),
        (_, Some(b)) => b.to_vec(),
        (_, None) => Vec::new(),
    }
}

pub fn write_length_prefixed(out: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
    match bytes {
        None => out.write_all(&(-1i32).to_be_bytes()),
        Some(b) => {
            let len = i32::try_from(b.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "record larger than 2 GiB"))?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(b)
        }
    }
}

/// Reads one length-prefixed field; Ok(None) at a clean end of input before
/// the field (`at_record_start`), an error for a stream cut mid-record.
pub fn read_length_prefixed(input: &mut impl Read, at_record_start: bool) -> Result<Option<Option<Vec<u8>>>> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match input.read(&mut len[filled..])? {
            0 if filled == 0 && at_record_start => return Ok(None),
            0 => bail!("input ends inside a length prefix"),
            n => filled += n,
        }
    }
    let len = i32::from_be_bytes(len);
    if len == -1 {
        return Ok(Some(None));
    }
    if len < 0 {
        bail!("invalid length prefix {len}");
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes).map_err(|e| anyhow!("input ends inside a {len}-byte field: {e}"))?;
    Ok(Some(Some(bytes)))
}

pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"name":"text"` for UTF-8 bytes, `"name_base64":"..."` for other bytes, `"name":null` for none.
pub fn json_bytes_field(name: &str, bytes: Option<&[u8]>) -> String {
    match bytes.map(|b| (b, std::str::from_utf8(b))) {
        None => format!("\"{name}\":null"),
        Some((_, Ok(text))) => format!("\"{name}\":{}", json_string(text)),
        Some((b, Err(_))) => format!("\"{name}_base64\":\"{}\"", encode_base64(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(Format::Hex.decode(hex(&all).as_bytes()).unwrap(), all);
        assert_eq!(Format::Base64.decode(encode_base64(&all).as_bytes()).unwrap(), all);
        assert!(Format::Hex.decode(b"abc").is_err());
        assert!(Format::Hex.decode(b"zz").is_err());
        assert!(Format::Base64.decode(b"!!!").is_err());
    }

    #[test]
    fn length_prefixed_fields_round_trip_and_reject_truncation() {
        let mut buf = Vec::new();
        write_length_prefixed(&mut buf, None).unwrap();
        write_length_prefixed(&mut buf, Some(b"\x00\xff\n")).unwrap();
        let mut input = &buf[..];
        assert_eq!(read_length_prefixed(&mut input, true).unwrap(), Some(None));
        assert_eq!(read_length_prefixed(&mut input, false).unwrap(), Some(Some(b"\x00\xff\n".to_vec())));
        assert_eq!(read_length_prefixed(&mut input, true).unwrap(), None);
        let mut cut = &buf[..6];
        read_length_prefixed(&mut cut, true).unwrap();
        assert!(read_length_prefixed(&mut cut, false).is_err());
    }

    #[test]
    fn json_fields_keep_binary_bytes() {
        assert_eq!(json_bytes_field("value", Some(b"a\"b")), "\"value\":\"a\\\"b\"");
        assert_eq!(json_bytes_field("value", Some(b"\xff")), "\"value_base64\":\"/w==\"");
        assert_eq!(json_bytes_field("key", None), "\"key\":null");
    }
}
