//! The table of supported chips: addresses, quantities with their units, and the options each takes.

use super::Chip;

/// What `check-config` knows about a chip.
pub struct ChipSpec {
    /// Config name.
    pub name: &'static str,
    /// The chip.
    pub chip: Chip,
    /// Addresses the chip can be strapped to.
    pub addresses: &'static [u8],
    /// Quantities and their units.
    pub quantities: &'static [(&'static str, &'static str)],
    /// Chip-specific source keys.
    pub options: &'static [&'static str],
}

const ALL_ADDRESSES: &[u8] = &[
    0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
    0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22,
    0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32,
    0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41, 0x42,
    0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x52,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
    0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
    0x73, 0x74, 0x75, 0x76, 0x77,
];

/// Every supported chip.
pub const CHIPS: &[ChipSpec] = &[
    ChipSpec {
        name: "bme280",
        chip: Chip::Bme280,
        addresses: &[0x76, 0x77],
        quantities: &[
            ("temperature", "°C"),
            ("humidity", "%"),
            ("pressure", "hPa"),
        ],
        options: &["oversampling", "filter"],
    },
    ChipSpec {
        name: "bmp280",
        chip: Chip::Bmp280,
        addresses: &[0x76, 0x77],
        quantities: &[("temperature", "°C"), ("pressure", "hPa")],
        options: &["oversampling", "filter"],
    },
    ChipSpec {
        name: "sht3x",
        chip: Chip::Sht3x,
        addresses: &[0x44, 0x45],
        quantities: &[("temperature", "°C"), ("humidity", "%")],
        options: &[],
    },
    ChipSpec {
        name: "sht4x",
        chip: Chip::Sht4x,
        addresses: &[0x44, 0x45, 0x46],
        quantities: &[("temperature", "°C"), ("humidity", "%")],
        options: &[],
    },
    ChipSpec {
        name: "ads1115",
        chip: Chip::Ads1115,
        addresses: &[0x48, 0x49, 0x4a, 0x4b],
        quantities: &[("voltage", "V"), ("current", "mA")],
        options: &["channel", "range", "shunt_ohms"],
    },
    ChipSpec {
        name: "tmp117",
        chip: Chip::Tmp117,
        addresses: &[0x48, 0x49, 0x4a, 0x4b],
        quantities: &[("temperature", "°C")],
        options: &[],
    },
    ChipSpec {
        name: "ina219",
        chip: Chip::Ina219,
        addresses: &[
            0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d,
            0x4e, 0x4f,
        ],
        quantities: &[
            ("bus_voltage", "V"),
            ("shunt_voltage", "mV"),
            ("current", "A"),
            ("power", "W"),
        ],
        options: &["shunt_ohms", "max_current"],
    },
    ChipSpec {
        name: "register",
        chip: Chip::Register,
        addresses: ALL_ADDRESSES,
        quantities: &[("value", "")],
        options: &[
            "register",
            "length",
            "byte_order",
            "signed",
            "trigger",
            "wait",
        ],
    },
];
