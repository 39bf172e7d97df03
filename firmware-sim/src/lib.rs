//! placeholder
pub mod modbus;
