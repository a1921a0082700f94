//! Lowercase hex, the form GitHub signatures and the deploy manifest use.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Why a string is not hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HexError {
    OddLength(usize),
    NotHex { at: usize, found: char },
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HexError::OddLength(len) => write!(f, "odd number of hex digits ({len})"),
            HexError::NotHex { at, found } => {
                write!(f, "{found:?} at position {at} is not a hex digit")
            }
        }
    }
}

/// Accepts either case: GitHub sends lowercase, but nothing promises it.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    fn nibble(at: usize, c: char) -> Result<u8, HexError> {
        c.to_digit(16)
            .map(|d| d as u8)
            .ok_or(HexError::NotHex { at, found: c })
    }
    let chars: Vec<char> = text.chars().collect();
    if !chars.len().is_multiple_of(2) {
        return Err(HexError::OddLength(chars.len()));
    }
    chars
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| Ok(nibble(2 * i, pair[0])? << 4 | nibble(2 * i + 1, pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_accepts_uppercase() {
        assert_eq!(encode(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(decode("009FfF").unwrap(), vec![0x00, 0x9f, 0xff]);
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("0g"), Err(HexError::NotHex { at: 1, found: 'g' }));
    }
}
