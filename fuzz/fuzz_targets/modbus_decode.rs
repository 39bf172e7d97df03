//! Modbus value decoding: register words → typed values for every data type × word order
//! (× table kind, bit, offset in the block, scale), plus the encode → decode round trip.
#![no_main]

use campusguard::ingest::modbus::codec::{encode_value, raw_number};
use campusguard::ingest::modbus::registers::{decode_point, point_width, BlockData, ReadBlock};
use campusguard::ingest::modbus::{DataType, ModbusPointConfig, Table, WordOrder};
use campusguard::model::Value;
use libfuzzer_sys::fuzz_target;

const TYPES: [DataType; 9] = [
    DataType::Bool,
    DataType::U16,
    DataType::I16,
    DataType::U32,
    DataType::I32,
    DataType::F32,
    DataType::U64,
    DataType::I64,
    DataType::F64,
];
const ORDERS: [WordOrder; 4] = [
    WordOrder::ABCD,
    WordOrder::CDAB,
    WordOrder::BADC,
    WordOrder::DCBA,
];
const TABLES: [Table; 4] = [Table::Coil, Table::Discrete, Table::Holding, Table::Input];

fuzz_target!(|data: &[u8]| {
    // Header: table, bit, address offset within the block, scale (f32 bits); the rest is words.
    if data.len() < 7 {
        return;
    }
    let table = TABLES[usize::from(data[0] % 4)];
    let bit = data[1];
    let start = u16::from(data[2]);
    let address = start.wrapping_add(u16::from(data[3] % 8));
    let scale = f64::from(f32::from_le_bytes([data[4], data[5], data[6], 0x3f]));
    let words: Vec<u16> = data[7..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
        .collect();
    let bits: Vec<bool> = data[7..].iter().map(|b| b & 1 == 1).collect();
    for data_type in TYPES {
        for order in ORDERS {
            let point = ModbusPointConfig {
                name: "p".into(),
                table,
                address,
                data_type,
                order,
                bit: Some(bit),
                scale,
                offset: 0.0,
                unit: None,
            };
            let width = point_width(&point);
            let block = ReadBlock {
                table,
                start,
                count: width.saturating_add(address - start),
                points: vec![0],
            };
            for answer in [
                BlockData::Words(words.clone()),
                BlockData::Bits(bits.clone()),
            ] {
                if let Ok(Value::Number(v)) = decode_point(&point, &block, &answer) {
                    assert!(v.is_finite());
                }
            }
            let raw = raw_number(data_type, order, &words);
            // What decodes must encode back to the same words (integers are exact; floats
            // keep their bits unless NaN).
            let n = usize::from(width).min(words.len());
            if data_type != DataType::Bool && n == usize::from(width) && raw.is_finite() {
                let exact = !matches!(data_type, DataType::U64 | DataType::I64)
                    || raw.abs() < 9_007_199_254_740_992.0;
                if exact {
                    if let Ok(back) = encode_value(raw, data_type, order) {
                        let again = raw_number(data_type, order, &back);
                        assert_eq!(again.to_bits(), raw.to_bits(), "{data_type:?} {order:?}");
                    }
                }
            }
        }
    }
});
