//! The Modbus data model and its value conversion: the four tables, the value types and word
//! orders a point or an action names, and how a number maps onto registers both ways.
//!
//! The bottom of `ingest/modbus`: [`super::config`] names these types, [`super::registers`]
//! decodes poll answers with [`raw_number`], and config validation and the action writes
//! ([`super::write`]) encode with [`encode_value`]. Pure functions, no I/O, no imports above.

use serde::Deserialize;

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// FC1, read-write bits.
    Coil,
    /// FC2, read-only bits.
    Discrete,
    /// FC3, read-write registers.
    Holding,
    /// FC4, read-only registers.
    Input,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }

    /// Coils and discrete inputs hold bits; holding and input registers hold 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
}

impl DataType {
    /// Registers this type spans (a `bool` is one bit, or one bit of one register).
    pub fn register_count(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F64 => "f64",
        }
    }
}

/// Byte and word order of a value, named after a 32-bit value `0xAABBCCDD`:
/// - `ABCD`: big-endian words, most significant word first (the Modbus default),
/// - `CDAB`: big-endian words, least significant word first ("word swap"),
/// - `BADC`: bytes swapped inside each word, most significant word first,
/// - `DCBA`: fully little-endian.
///
/// For 64-bit types the same rule applies to four words (`CDAB` = word order reversed). For
/// 16-bit types only the byte swap matters (`BADC`/`DCBA` swap, `ABCD`/`CDAB` do not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum WordOrder {
    #[default]
    ABCD,
    CDAB,
    BADC,
    DCBA,
}

impl WordOrder {
    /// Least significant word comes first.
    pub fn words_reversed(self) -> bool {
        matches!(self, WordOrder::CDAB | WordOrder::DCBA)
    }

    /// The two bytes of each word are swapped.
    pub fn bytes_swapped(self) -> bool {
        matches!(self, WordOrder::BADC | WordOrder::DCBA)
    }
}

/// The raw number in `words` (as many as the type spans) read in `order`, before scale and
/// offset. 64-bit integers beyond 2^53 lose precision in the f64.
pub fn raw_number(data_type: DataType, order: WordOrder, words: &[u16]) -> f64 {
    let mut bits: u64 = 0;
    let mut put = |word: u16| {
        let word = if order.bytes_swapped() {
            word.swap_bytes()
        } else {
            word
        };
        bits = bits << 16 | u64::from(word);
    };
    if order.words_reversed() {
        words.iter().rev().copied().for_each(&mut put);
    } else {
        words.iter().copied().for_each(&mut put);
    }
    // The `as` casts below reinterpret the assembled bits at the type's width on purpose.
    match data_type {
        DataType::Bool => f64::from(u8::from(bits & 1 == 1)),
        DataType::U16 => f64::from(bits as u16),
        DataType::I16 => f64::from(bits as u16 as i16),
        DataType::U32 => f64::from(bits as u32),
        DataType::I32 => f64::from(bits as u32 as i32),
        DataType::F32 => f64::from(f32::from_bits(bits as u32)),
        DataType::U64 => bits as f64,
        DataType::I64 => bits as i64 as f64,
        DataType::F64 => f64::from_bits(bits),
    }
}

/// The registers that hold the big-endian bytes `be` (a value of 2, 4 or 8 bytes, most
/// significant first) in `order`: the inverse of [`raw_number`]'s assembly, for writers,
/// simulators and tests.
pub fn encode_be_bytes(be: &[u8], order: WordOrder) -> Vec<u16> {
    let mut words: Vec<u16> = be
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]))
        .collect();
    if order.words_reversed() {
        words.reverse();
    }
    if order.bytes_swapped() {
        words.iter_mut().for_each(|w| *w = w.swap_bytes());
    }
    words
}

/// The registers that hold `value` as `data_type` in `order`, for an action's write. Integers must be
/// whole and in the type's range; floats must be finite.
pub fn encode_value(value: f64, data_type: DataType, order: WordOrder) -> Result<Vec<u16>, String> {
    if !value.is_finite() {
        return Err(format!("value {value} is not a finite number"));
    }
    let whole_in = |min: f64, max: f64| {
        if value.fract() == 0.0 && (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "value {value} is not a whole number in the range of {}",
                data_type.as_str()
            ))
        }
    };
    // The casts below follow a range check, so they only convert, never truncate.
    let be: Vec<u8> = match data_type {
        DataType::Bool => return Err("bool is written to a coil, not a register".into()),
        DataType::U16 => {
            whole_in(0.0, f64::from(u16::MAX))?;
            (value as u16).to_be_bytes().to_vec()
        }
        DataType::I16 => {
            whole_in(f64::from(i16::MIN), f64::from(i16::MAX))?;
            (value as i16).to_be_bytes().to_vec()
        }
        DataType::U32 => {
            whole_in(0.0, f64::from(u32::MAX))?;
            (value as u32).to_be_bytes().to_vec()
        }
        DataType::I32 => {
            whole_in(f64::from(i32::MIN), f64::from(i32::MAX))?;
            (value as i32).to_be_bytes().to_vec()
        }
        DataType::F32 => {
            if value.abs() > f64::from(f32::MAX) {
                return Err(format!("value {value} does not fit in f32"));
            }
            (value as f32).to_be_bytes().to_vec()
        }
        DataType::U64 => {
            whole_in(0.0, u64::MAX as f64)?;
            (value as u64).to_be_bytes().to_vec()
        }
        DataType::I64 => {
            whole_in(i64::MIN as f64, i64::MAX as f64)?;
            (value as i64).to_be_bytes().to_vec()
        }
        DataType::F64 => value.to_be_bytes().to_vec(),
    };
    Ok(encode_be_bytes(&be, order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_to_write_encode_in_the_configured_order_and_are_range_checked() {
        assert_eq!(
            encode_value(1.0, DataType::U16, WordOrder::ABCD),
            Ok(vec![1])
        );
        assert_eq!(
            encode_value(-2.0, DataType::I16, WordOrder::ABCD),
            Ok(vec![0xFFFE])
        );
        assert_eq!(
            encode_value(123.456, DataType::F32, WordOrder::CDAB),
            Ok(vec![0xE979, 0x42F6])
        );
        assert_eq!(
            encode_value(70000.0, DataType::U32, WordOrder::ABCD),
            Ok(vec![0x0001, 0x1170])
        );
        assert!(encode_value(70000.0, DataType::U16, WordOrder::ABCD).is_err());
        assert!(encode_value(1.5, DataType::I32, WordOrder::ABCD).is_err());
        assert!(encode_value(-1.0, DataType::U64, WordOrder::ABCD).is_err());
        assert!(encode_value(f64::NAN, DataType::F64, WordOrder::ABCD).is_err());
    }
}
