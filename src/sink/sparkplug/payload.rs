//! The Sparkplug B payload (Eclipse Tahu `sparkplug_b.proto`, Sparkplug 3.0) as prost messages: the fields
//! watchpost writes and reads (datasets, templates and extensions are not used).

/// `org.eclipse.tahu.protobuf.Payload`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Milliseconds since the epoch.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    /// The metrics.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// 0–255, +1 per message (not in NDEATH).
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
}

/// `Payload.Metric`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Name (births, commands); absent in data messages that use the alias.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Alias announced in the birth.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the epoch.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// Sparkplug data type.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// Store-and-forward: sent late.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// Not to be stored by the host.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// No value.
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// Properties (engineering unit, quality).
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    /// The value.
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15")]
    pub value: Option<Value>,
}

/// `Payload.Metric.value`
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// Int8–UInt32 (signed ones as two's complement).
    #[prost(uint32, tag = "10")]
    Int(u32),
    /// Int64, UInt64, DateTime.
    #[prost(uint64, tag = "11")]
    Long(u64),
    /// Float.
    #[prost(float, tag = "12")]
    Float(f32),
    /// Double.
    #[prost(double, tag = "13")]
    Double(f64),
    /// Boolean.
    #[prost(bool, tag = "14")]
    Boolean(bool),
    /// String, Text, UUID.
    #[prost(string, tag = "15")]
    String(String),
}

/// `Payload.PropertySet`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    /// Keys, in the order of `values`.
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    /// Values.
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// `Payload.PropertyValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    /// Sparkplug data type.
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    /// No value.
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    /// The value.
    #[prost(oneof = "PropValue", tags = "3, 4, 5, 6, 7, 8")]
    pub value: Option<PropValue>,
}

/// `Payload.PropertyValue.value`
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropValue {
    /// Int8–UInt32.
    #[prost(uint32, tag = "3")]
    Int(u32),
    /// Int64, UInt64.
    #[prost(uint64, tag = "4")]
    Long(u64),
    /// Float.
    #[prost(float, tag = "5")]
    Float(f32),
    /// Double.
    #[prost(double, tag = "6")]
    Double(f64),
    /// Boolean.
    #[prost(bool, tag = "7")]
    Boolean(bool),
    /// String.
    #[prost(string, tag = "8")]
    String(String),
}

/// Sparkplug B data types (specification 3.0, §6.4.16).
pub mod datatype {
    /// Int8.
    pub const INT8: u32 = 1;
    /// Int16.
    pub const INT16: u32 = 2;
    /// Int32.
    pub const INT32: u32 = 3;
    /// Int64.
    pub const INT64: u32 = 4;
    /// UInt8.
    pub const UINT8: u32 = 5;
    /// UInt16.
    pub const UINT16: u32 = 6;
    /// UInt32.
    pub const UINT32: u32 = 7;
    /// UInt64.
    pub const UINT64: u32 = 8;
    /// Float.
    pub const FLOAT: u32 = 9;
    /// Double.
    pub const DOUBLE: u32 = 10;
    /// Boolean.
    pub const BOOLEAN: u32 = 11;
    /// String.
    pub const STRING: u32 = 12;
}
