//! Register maps: which reads a device needs (coalescing) and how raw bits and registers become
//! point values (decoding).
//!
//! The poller asks [`plan_reads`] once per device for the fewest [`ReadBlock`]s that cover all
//! its points, sends one request per block each cycle, and turns each answer into values with
//! [`decode_point`]. Pure functions, no I/O.

use thiserror::Error;

use super::codec::{raw_number, DataType, Table};
use super::config::{ModbusConfig, ModbusPointConfig};
use crate::model::Value;

/// How far reads may be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceLimits {
    /// Unused registers allowed between two points of one read.
    pub max_register_gap: u16,
    /// Unused coils / discrete inputs allowed between two points of one read.
    pub max_bit_gap: u16,
    pub max_registers_per_read: u16,
    pub max_bits_per_read: u16,
}

impl From<&ModbusConfig> for CoalesceLimits {
    fn from(config: &ModbusConfig) -> Self {
        Self {
            max_register_gap: config.max_register_gap,
            max_bit_gap: config.max_bit_gap,
            max_registers_per_read: config.max_registers_per_read,
            max_bits_per_read: config.max_bits_per_read,
        }
    }
}

impl Default for CoalesceLimits {
    fn default() -> Self {
        Self::from(&ModbusConfig::default())
    }
}

/// One read request: `count` bits or registers of `table` from `start`, covering `points`
/// (indices into the device's point list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    pub points: Vec<usize>,
}

/// The answer to one [`ReadBlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockData {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("point `{point}`: response too short ({got} of {needed} values)")]
    ShortResponse {
        point: String,
        needed: usize,
        got: usize,
    },
    #[error("point `{point}`: expected {expected} but the response holds the other kind")]
    WrongKind {
        point: String,
        expected: &'static str,
    },
    #[error("point `{point}`: value is not a finite number (raw {raw})")]
    NotFinite { point: String, raw: f64 },
}

/// Bits or registers a point occupies in its table (a bool in a register occupies that one
/// register).
pub fn point_width(point: &ModbusPointConfig) -> u16 {
    if point.table.is_bits() {
        1
    } else {
        point.data_type.register_count()
    }
}

/// The fewest reads covering all `points`: per table, points sorted by address are merged into
/// one read while the hole between them is at most the gap limit and the read stays within the
/// size limit. Assumes a validated config (addresses in range, widths within the limits).
pub fn plan_reads(points: &[ModbusPointConfig], limits: &CoalesceLimits) -> Vec<ReadBlock> {
    plan_reads_of(points, 0..points.len(), limits)
}

/// [`plan_reads`] for the points at `indices` only (block point indices still refer to
/// `points`).
pub fn plan_reads_of(
    points: &[ModbusPointConfig],
    indices: impl IntoIterator<Item = usize>,
    limits: &CoalesceLimits,
) -> Vec<ReadBlock> {
    let mut order: Vec<usize> = indices.into_iter().filter(|&i| i < points.len()).collect();
    order.sort_by_key(|&i| (points[i].table, points[i].address));
    let mut blocks: Vec<ReadBlock> = Vec::new();
    for index in order {
        let point = &points[index];
        let (max_gap, max_count) = if point.table.is_bits() {
            (limits.max_bit_gap, limits.max_bits_per_read)
        } else {
            (limits.max_register_gap, limits.max_registers_per_read)
        };
        let start = u32::from(point.address);
        let end = start + u32::from(point_width(point));
        if let Some(block) = blocks.last_mut() {
            let block_end = u32::from(block.start) + u32::from(block.count);
            let new_end = block_end.max(end);
            let fits = block.table == point.table
                && start <= block_end + u32::from(max_gap)
                && new_end - u32::from(block.start) <= u32::from(max_count);
            if fits {
                // Fits in u16: bounded by max_count above.
                block.count = u16::try_from(new_end - u32::from(block.start)).unwrap_or(u16::MAX);
                block.points.push(index);
                continue;
            }
        }
        blocks.push(ReadBlock {
            table: point.table,
            start: point.address,
            count: point_width(point),
            points: vec![index],
        });
    }
    blocks
}

/// Whether `block` also reads addresses no point of it uses (a bridged gap).
pub fn bridges_gap(block: &ReadBlock, points: &[ModbusPointConfig]) -> bool {
    let mut used = vec![false; usize::from(block.count)];
    for point in block.points.iter().filter_map(|&i| points.get(i)) {
        let from = usize::from(point.address.saturating_sub(block.start));
        let to = (from + usize::from(point_width(point))).min(used.len());
        used.iter_mut().take(to).skip(from).for_each(|u| *u = true);
    }
    used.contains(&false)
}

/// The value of `point` from the answer `data` to `block` (which must cover the point).
pub fn decode_point(
    point: &ModbusPointConfig,
    block: &ReadBlock,
    data: &BlockData,
) -> Result<Value, DecodeError> {
    let offset = usize::from(point.address.saturating_sub(block.start));
    let width = usize::from(point_width(point));
    let short = |got: usize| DecodeError::ShortResponse {
        point: point.name.clone(),
        needed: offset + width,
        got,
    };
    match (point.table.is_bits(), data) {
        (true, BlockData::Bits(bits)) => bits
            .get(offset)
            .map(|&b| Value::Bool(b))
            .ok_or_else(|| short(bits.len())),
        (false, BlockData::Words(words)) => {
            let slice = words
                .get(offset..offset + width)
                .ok_or_else(|| short(words.len()))?;
            decode_words(point, slice)
        }
        (true, BlockData::Words(_)) => Err(DecodeError::WrongKind {
            point: point.name.clone(),
            expected: "bits",
        }),
        (false, BlockData::Bits(_)) => Err(DecodeError::WrongKind {
            point: point.name.clone(),
            expected: "registers",
        }),
    }
}

/// A register-table point from exactly its registers.
fn decode_words(point: &ModbusPointConfig, words: &[u16]) -> Result<Value, DecodeError> {
    if point.data_type == DataType::Bool {
        let bit = point.bit.unwrap_or(0).min(15);
        let word = words.first().copied().unwrap_or(0);
        return Ok(Value::Bool(word >> bit & 1 == 1));
    }
    let raw = raw_number(point.data_type, point.order, words);
    let value = raw * point.scale + point.offset;
    if value.is_finite() {
        Ok(Value::Number(value))
    } else {
        Err(DecodeError::NotFinite {
            point: point.name.clone(),
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::modbus::codec::{encode_be_bytes, WordOrder};

    fn point(name: &str, table: Table, address: u16, data_type: DataType) -> ModbusPointConfig {
        ModbusPointConfig {
            name: name.into(),
            table,
            address,
            data_type,
            order: WordOrder::ABCD,
            bit: None,
            scale: 1.0,
            offset: 0.0,
            unit: None,
        }
    }

    fn decode_one(p: &ModbusPointConfig, words: &[u16]) -> Result<Value, DecodeError> {
        let block = ReadBlock {
            table: p.table,
            start: p.address,
            count: u16::try_from(words.len()).expect("short test input"),
            points: vec![0],
        };
        decode_point(p, &block, &BlockData::Words(words.to_vec()))
    }

    const ORDERS: [WordOrder; 4] = [
        WordOrder::ABCD,
        WordOrder::CDAB,
        WordOrder::BADC,
        WordOrder::DCBA,
    ];

    #[test]
    fn f32_decodes_from_the_four_documented_orders() {
        // 123.456f32 = 0x42F6E979.
        let cases = [
            (WordOrder::ABCD, [0x42F6, 0xE979]),
            (WordOrder::CDAB, [0xE979, 0x42F6]),
            (WordOrder::BADC, [0xF642, 0x79E9]),
            (WordOrder::DCBA, [0x79E9, 0xF642]),
        ];
        for (order, words) in cases {
            let mut p = point("t", Table::Holding, 0, DataType::F32);
            p.order = order;
            assert_eq!(
                decode_one(&p, &words),
                Ok(Value::Number(f64::from(123.456f32))),
                "{order:?}"
            );
            assert_eq!(encode_be_bytes(&0x42F6_E979u32.to_be_bytes(), order), words);
        }
    }

    #[test]
    fn every_type_round_trips_through_every_order() {
        let cases: [(DataType, Vec<u8>, f64); 8] = [
            (DataType::U16, 0xBEEFu16.to_be_bytes().to_vec(), 48879.0),
            (DataType::I16, (-1234i16).to_be_bytes().to_vec(), -1234.0),
            (DataType::U32, 3_000_000_000u32.to_be_bytes().to_vec(), 3e9),
            (
                DataType::I32,
                (-2_000_000_001i32).to_be_bytes().to_vec(),
                -2_000_000_001.0,
            ),
            (DataType::F32, (-0.5f32).to_be_bytes().to_vec(), -0.5),
            (
                DataType::U64,
                (1u64 << 52 | 7).to_be_bytes().to_vec(),
                (1u64 << 52 | 7) as f64,
            ),
            (
                DataType::I64,
                (-(1i64 << 40) - 3).to_be_bytes().to_vec(),
                (-(1i64 << 40) - 3) as f64,
            ),
            (
                DataType::F64,
                6.02214076e23f64.to_be_bytes().to_vec(),
                6.02214076e23,
            ),
        ];
        for (data_type, be, expected) in cases {
            for order in ORDERS {
                let words = encode_be_bytes(&be, order);
                assert_eq!(words.len(), usize::from(data_type.register_count()));
                let mut p = point("v", Table::Input, 0, data_type);
                p.order = order;
                assert_eq!(
                    decode_one(&p, &words),
                    Ok(Value::Number(expected)),
                    "{data_type:?} {order:?} {words:04X?}"
                );
            }
        }
    }

    #[test]
    fn sixty_four_bit_cdab_means_least_significant_word_first() {
        let mut p = point("v", Table::Holding, 0, DataType::U64);
        p.order = WordOrder::CDAB;
        assert_eq!(
            decode_one(&p, &[0x0004, 0x0003, 0x0002, 0x0001]),
            Ok(Value::Number(0x0001_0002_0003_0004u64 as f64))
        );
        p.order = WordOrder::DCBA;
        assert_eq!(
            decode_one(&p, &[0x0400, 0x0300, 0x0200, 0x0100]),
            Ok(Value::Number(0x0001_0002_0003_0004u64 as f64))
        );
    }

    #[test]
    fn scale_and_offset_apply_as_raw_times_scale_plus_offset() {
        let mut p = point("voc", Table::Holding, 0, DataType::U16);
        p.scale = 0.01;
        p.offset = -1.0;
        assert_eq!(
            decode_one(&p, &[4200]),
            Ok(Value::Number(4200.0 * 0.01 - 1.0))
        );
        let mut q = point("t", Table::Holding, 0, DataType::I16);
        q.scale = 0.1;
        assert_eq!(decode_one(&q, &[0xFF38]), Ok(Value::Number(-200.0 * 0.1)));
    }

    #[test]
    fn a_bool_reads_its_bit_of_a_register() {
        let mut p = point("door", Table::Holding, 0, DataType::Bool);
        p.bit = Some(1);
        assert_eq!(decode_one(&p, &[0b10]), Ok(Value::Bool(true)));
        assert_eq!(decode_one(&p, &[0b01]), Ok(Value::Bool(false)));
        p.bit = Some(15);
        assert_eq!(decode_one(&p, &[0x8000]), Ok(Value::Bool(true)));
    }

    #[test]
    fn nan_and_infinity_are_decode_errors_not_values() {
        let p = point("t", Table::Holding, 0, DataType::F32);
        assert!(matches!(
            decode_one(&p, &[0x7FC0, 0x0000]),
            Err(DecodeError::NotFinite { .. })
        ));
        assert!(matches!(
            decode_one(&p, &[0x7F80, 0x0000]),
            Err(DecodeError::NotFinite { .. })
        ));
    }

    #[test]
    fn a_short_response_is_a_decode_error() {
        let p = point("t", Table::Holding, 4, DataType::F32);
        let block = ReadBlock {
            table: Table::Holding,
            start: 0,
            count: 6,
            points: vec![0],
        };
        assert_eq!(
            decode_point(&p, &block, &BlockData::Words(vec![0; 5])),
            Err(DecodeError::ShortResponse {
                point: "t".into(),
                needed: 6,
                got: 5
            })
        );
        assert!(matches!(
            decode_point(&p, &block, &BlockData::Bits(vec![true; 8])),
            Err(DecodeError::WrongKind { .. })
        ));
    }

    #[test]
    fn coil_and_discrete_points_decode_their_bit() {
        let p = point("fan", Table::Coil, 3, DataType::Bool);
        let block = ReadBlock {
            table: Table::Coil,
            start: 0,
            count: 4,
            points: vec![0],
        };
        let data = BlockData::Bits(vec![false, false, false, true]);
        assert_eq!(decode_point(&p, &block, &data), Ok(Value::Bool(true)));
    }

    fn spans(blocks: &[ReadBlock]) -> Vec<(Table, u16, u16)> {
        blocks.iter().map(|b| (b.table, b.start, b.count)).collect()
    }

    #[test]
    fn gaps_are_bridged_only_up_to_the_configured_size() {
        let points = vec![
            point("a", Table::Holding, 0, DataType::F32),  // 0..2
            point("b", Table::Holding, 10, DataType::U16), // gap 8 -> bridged
            point("c", Table::Holding, 20, DataType::U16), // gap 9 -> new read
        ];
        let limits = CoalesceLimits::default();
        assert_eq!(limits.max_register_gap, 8);
        let blocks = plan_reads(&points, &limits);
        assert_eq!(
            spans(&blocks),
            vec![(Table::Holding, 0, 11), (Table::Holding, 20, 1)]
        );
        assert_eq!(blocks[0].points, vec![0, 1]);
        let no_gaps = CoalesceLimits {
            max_register_gap: 0,
            ..limits
        };
        assert_eq!(plan_reads(&points, &no_gaps).len(), 3);
    }

    #[test]
    fn a_bridged_gap_is_detected_and_can_be_planned_away() {
        let points = vec![
            point("a", Table::Input, 0, DataType::F32),
            point("b", Table::Input, 10, DataType::U16),
            point("c", Table::Coil, 0, DataType::Bool),
        ];
        let blocks = plan_reads(&points, &CoalesceLimits::default());
        assert_eq!(
            spans(&blocks),
            vec![(Table::Coil, 0, 1), (Table::Input, 0, 11)]
        );
        assert!(!bridges_gap(&blocks[0], &points));
        assert!(bridges_gap(&blocks[1], &points));
        let no_gaps = CoalesceLimits {
            max_register_gap: 0,
            max_bit_gap: 0,
            ..CoalesceLimits::default()
        };
        let split = plan_reads_of(&points, blocks[1].points.clone(), &no_gaps);
        assert_eq!(
            spans(&split),
            vec![(Table::Input, 0, 2), (Table::Input, 10, 1)]
        );
        assert_eq!(split[1].points, vec![1]);
    }

    #[test]
    fn tables_are_never_mixed_and_points_are_sorted_by_address() {
        let points = vec![
            point("d", Table::Discrete, 0, DataType::Bool),
            point("h2", Table::Holding, 2, DataType::F32),
            point("c", Table::Coil, 0, DataType::Bool),
            point("h0", Table::Holding, 0, DataType::F32),
            point("i", Table::Input, 0, DataType::U16),
        ];
        let blocks = plan_reads(&points, &CoalesceLimits::default());
        assert_eq!(
            spans(&blocks),
            vec![
                (Table::Coil, 0, 1),
                (Table::Discrete, 0, 1),
                (Table::Holding, 0, 4),
                (Table::Input, 0, 1)
            ]
        );
        assert_eq!(blocks[2].points, vec![3, 1]);
    }

    #[test]
    fn bits_of_one_register_share_one_read() {
        let mut a = point("a", Table::Holding, 8, DataType::Bool);
        a.bit = Some(0);
        let mut b = a.clone();
        b.name = "b".into();
        b.bit = Some(1);
        let blocks = plan_reads(&[a, b], &CoalesceLimits::default());
        assert_eq!(spans(&blocks), vec![(Table::Holding, 8, 1)]);
    }

    #[test]
    fn reads_stop_at_125_registers_and_2000_coils() {
        // 200 contiguous u16 registers -> 125 + 75.
        let registers: Vec<_> = (0..200)
            .map(|i| point(&format!("r{i}"), Table::Input, i, DataType::U16))
            .collect();
        let blocks = plan_reads(&registers, &CoalesceLimits::default());
        assert_eq!(
            spans(&blocks),
            vec![(Table::Input, 0, 125), (Table::Input, 125, 75)]
        );
        // f32s at 0, 2, .., never split across reads: 62 fit (124 registers), the 63rd starts
        // a new read.
        let floats: Vec<_> = (0..70)
            .map(|i| point(&format!("f{i}"), Table::Holding, i * 2, DataType::F32))
            .collect();
        let blocks = plan_reads(&floats, &CoalesceLimits::default());
        assert_eq!(
            spans(&blocks),
            vec![(Table::Holding, 0, 124), (Table::Holding, 124, 16)]
        );
        let coils: Vec<_> = (0..2500)
            .map(|i| point(&format!("c{i}"), Table::Coil, i, DataType::Bool))
            .collect();
        let blocks = plan_reads(&coils, &CoalesceLimits::default());
        assert_eq!(
            spans(&blocks),
            vec![(Table::Coil, 0, 2000), (Table::Coil, 2000, 500)]
        );
    }
}
