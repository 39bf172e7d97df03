#!/usr/bin/env python3
"""A pymodbus TCP server with known values, an independent Modbus implementation for
tests/modbus.rs. Usage: modbus_pymodbus_server.py PORT. Every unit id answers the same data.

Values are encoded here with `struct`, not with the gateway's code. Zero-based protocol
addresses:

holding 0-1  f32 CDAB  123.456
holding 2-3  f32 ABCD  -7.25
holding 4-5  i32 ABCD  -123456
holding 6    u16       2345     (read with scale 0.1 -> 234.5)
holding 7-8  u32 CDAB  3000000000
holding 9    i16       -300
holding 10-11 f32 ABCD NaN     (not a value: the gateway counts a decode error)
input   0-1  f32 ABCD  0.5
input   10   u16       77       (2-9 are unmapped: a read across them is refused with
                                 exception 2, as many real devices do)
coils   0-3  1 0 1 1
discrete 0-1 0 1
"""

import asyncio
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSparseDataBlock,
)

try:  # pymodbus >= 3.10
    from pymodbus.datastore import ModbusDeviceContext as DeviceContext
except ImportError:  # older 3.x
    from pymodbus.datastore import ModbusSlaveContext as DeviceContext
from pymodbus.server import StartAsyncTcpServer


def words(fmt, value, word_swap=False):
    packed = struct.pack(">" + fmt, value)
    result = list(struct.unpack(">" + "H" * (len(packed) // 2), packed))
    if word_swap:
        result.reverse()
    return result


def main():
    port = int(sys.argv[1])
    holding = (
        words("f", 123.456, word_swap=True)
        + words("f", -7.25)
        + words("i", -123456)
        + words("H", 2345)
        + words("I", 3000000000, word_swap=True)
        + words("h", -300)
    )
    inputs = words("f", 0.5)
    # Sparse blocks take protocol addresses as they are.
    sparse_inputs = {0: inputs[0], 1: inputs[1], 10: 77}
    # Blocks start at 1: pymodbus maps protocol address 0 to block address 1.
    device = DeviceContext(
        hr=ModbusSequentialDataBlock(1, holding + [0x7FC0, 0x0000] + [0] * 4),
        ir=ModbusSparseDataBlock(sparse_inputs),
        co=ModbusSequentialDataBlock(1, [True, False, True, True] + [False] * 4),
        di=ModbusSequentialDataBlock(1, [False, True] + [False] * 6),
    )
    context = ModbusServerContext(device, single=True)
    asyncio.run(StartAsyncTcpServer(context=context, address=("127.0.0.1", port)))


if __name__ == "__main__":
    main()
