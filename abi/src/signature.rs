//! Host function and guest export signatures, as data.

use core::fmt;

/// A core wasm value type used by the ABI (only numbers cross the boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    /// 32-bit integer: pointers, lengths, kinds, levels, flags.
    I32,
    /// 64-bit integer: the packed results.
    I64,
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
        })
    }
}

/// A flat wasm function type: parameters and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The parameter types, in order.
    pub params: &'static [ValType],
    /// The result types (zero or one in this ABI).
    pub results: &'static [ValType],
}

impl fmt::Display for Signature {
    /// Formats as `(i32, i32) -> i64`; no results print as `()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str(") -> ")?;
        match self.results {
            [] => f.write_str("()"),
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("(")?;
                for (i, r) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{r}")?;
                }
                f.write_str(")")
            }
        }
    }
}

use ValType::{I32, I64};

const fn sig(params: &'static [ValType], results: &'static [ValType]) -> Signature {
    Signature { params, results }
}

macro_rules! host_functions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal : ($($p:ident),*) -> ($($r:ident),*); )*) => {
        /// One of the 19 functions the host exports in module [`MODULE`](crate::MODULE).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum HostFunction {
            $( $(#[$doc])* $variant, )*
        }

        impl HostFunction {
            /// Every host function, in the order of the specification.
            pub const ALL: [HostFunction; 19] = [$(HostFunction::$variant),*];

            /// The import name, e.g. `get_header_values`.
            pub const fn name(self) -> &'static str {
                match self { $(HostFunction::$variant => $name,)* }
            }

            /// The flat wasm signature.
            pub const fn signature(self) -> Signature {
                match self { $(HostFunction::$variant => sig(&[$($p),*], &[$($r),*]),)* }
            }
        }
    };
}

host_functions! {
    /// `enable_features(features: i32) -> i32`: enables what it can, returns all enabled.
    EnableFeatures = "enable_features": (I32) -> (I32);
    /// `get_config(buf: i32, buf_limit: i32) -> i32`: the guest's configuration bytes.
    GetConfig = "get_config": (I32, I32) -> (I32);
    /// `log(level: i32, message: i32, message_len: i32)`: never traps.
    Log = "log": (I32, I32, I32) -> ();
    /// `log_enabled(level: i32) -> i32`: 1 when a message at that level is logged.
    LogEnabled = "log_enabled": (I32) -> (I32);
    /// `get_header_names(kind: i32, buf: i32, buf_limit: i32) -> i64` ([`CountLen`](crate::CountLen)).
    GetHeaderNames = "get_header_names": (I32, I32, I32) -> (I64);
    /// `get_header_values(kind, name, name_len, buf, buf_limit) -> i64` ([`CountLen`](crate::CountLen)).
    GetHeaderValues = "get_header_values": (I32, I32, I32, I32, I32) -> (I64);
    /// `set_header_value(kind, name, name_len, value, value_len)`: replaces all values.
    SetHeaderValue = "set_header_value": (I32, I32, I32, I32, I32) -> ();
    /// `add_header_value(kind, name, name_len, value, value_len)`: appends one value.
    AddHeaderValue = "add_header_value": (I32, I32, I32, I32, I32) -> ();
    /// `remove_header(kind, name, name_len)`: removes all values.
    RemoveHeader = "remove_header": (I32, I32, I32) -> ();
    /// `read_body(kind, buf, buf_limit) -> i64` ([`EofLen`](crate::EofLen)).
    ReadBody = "read_body": (I32, I32, I32) -> (I64);
    /// `write_body(kind, body, body_len)`: first write in a phase replaces, later ones append.
    WriteBody = "write_body": (I32, I32, I32) -> ();
    /// `get_method(buf, buf_limit) -> i32`.
    GetMethod = "get_method": (I32, I32) -> (I32);
    /// `set_method(method, method_len)`.
    SetMethod = "set_method": (I32, I32) -> ();
    /// `get_uri(buf, buf_limit) -> i32`: the encoded request-target.
    GetUri = "get_uri": (I32, I32) -> (I32);
    /// `set_uri(uri, uri_len)`.
    SetUri = "set_uri": (I32, I32) -> ();
    /// `get_protocol_version(buf, buf_limit) -> i32`.
    GetProtocolVersion = "get_protocol_version": (I32, I32) -> (I32);
    /// `get_source_addr(buf, buf_limit) -> i32`.
    GetSourceAddr = "get_source_addr": (I32, I32) -> (I32);
    /// `get_status_code() -> i32`.
    GetStatusCode = "get_status_code": () -> (I32);
    /// `set_status_code(status_code: i32)`.
    SetStatusCode = "set_status_code": (I32) -> ();
}

impl HostFunction {
    /// Looks a host function up by its import name.
    pub fn from_name(name: &str) -> Option<HostFunction> {
        HostFunction::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for HostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name(), self.signature())
    }
}

/// A function the guest must export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestExport {
    /// `handle_request() -> i64` ([`CtxNext`](crate::CtxNext)).
    HandleRequest,
    /// `handle_response(req_ctx: i32, is_error: i32)`. Upstream prints it as an
    /// import without parameters (erratum 1); it is this export.
    HandleResponse,
}

impl GuestExport {
    /// Both guest exports.
    pub const ALL: [GuestExport; 2] = [GuestExport::HandleRequest, GuestExport::HandleResponse];

    /// The export name.
    pub const fn name(self) -> &'static str {
        match self {
            GuestExport::HandleRequest => crate::HANDLE_REQUEST,
            GuestExport::HandleResponse => crate::HANDLE_RESPONSE,
        }
    }

    /// The flat wasm signature.
    pub const fn signature(self) -> Signature {
        match self {
            GuestExport::HandleRequest => sig(&[], &[I64]),
            GuestExport::HandleResponse => sig(&[I32, I32], &[]),
        }
    }
}

impl fmt::Display for GuestExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name(), self.signature())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, f) in HostFunction::ALL.iter().enumerate() {
            assert_eq!(HostFunction::from_name(f.name()), Some(*f));
            for g in &HostFunction::ALL[i + 1..] {
                assert_ne!(f.name(), g.name());
            }
        }
        assert_eq!(HostFunction::from_name("get_path"), None, "erratum 6: not a host function");
    }

    #[test]
    fn signatures_print_like_wat() {
        assert_eq!(HostFunction::GetStatusCode.signature().to_string(), "() -> i32");
        assert_eq!(HostFunction::RemoveHeader.signature().to_string(), "(i32, i32, i32) -> ()");
        assert_eq!(GuestExport::HandleResponse.to_string(), "handle_response(i32, i32) -> ()");
        assert_eq!(GuestExport::HandleRequest.to_string(), "handle_request() -> i64");
    }

    #[test]
    fn read_body_takes_a_limit() {
        // Erratum 5: the third parameter is the buffer limit, an i32.
        assert_eq!(HostFunction::ReadBody.signature().params, &[I32, I32, I32]);
    }
}
