//! Feature bits, log levels and the kinds of headers and bodies.

use core::fmt;

/// A raw `i32` that is not a valid value of an ABI enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    /// Which enumeration: `"log level"`, `"header kind"`, `"body kind"`, `"feature"`.
    pub what: &'static str,
    /// The value the guest passed.
    pub value: i64,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.value)
    }
}

impl core::error::Error for InvalidValue {}

macro_rules! abi_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $( $(#[$vm:meta])* $v:ident = $n:literal => $s:literal, )* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(i32)]
        pub enum $name { $( $(#[$vm])* $v = $n, )* }

        impl $name {
            /// Every value, in ascending order.
            pub const ALL: &'static [$name] = &[$($name::$v),*];

            /// The name used in the specification, e.g. `response_trailers`.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }

        impl TryFrom<i32> for $name {
            type Error = InvalidValue;
            fn try_from(raw: i32) -> Result<Self, InvalidValue> {
                match raw {
                    $($n => Ok($name::$v),)*
                    _ => Err(InvalidValue { what: $what, value: raw as i64 }),
                }
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> i32 { v as i32 }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

abi_enum! {
    /// Log levels; a host logs a message when its level is at least the
    /// configured one. [`LogLevel::None`] as configuration disables logging.
    LogLevel, "log level" {
        /// `-1`
        Debug = -1 => "debug",
        /// `0`
        Info = 0 => "info",
        /// `1`
        Warn = 1 => "warn",
        /// `2`
        Error = 2 => "error",
        /// `3`: never logged; as a host setting, logging off.
        None = 3 => "none",
    }
}

abi_enum! {
    /// Which header map a header function addresses.
    HeaderKind, "header kind" {
        /// `0`: request headers.
        Request = 0 => "request",
        /// `1`: response headers.
        Response = 1 => "response",
        /// `2`: request trailers (needs [`Feature::Trailers`]).
        RequestTrailers = 2 => "request_trailers",
        /// `3`: response trailers (needs [`Feature::Trailers`]).
        ResponseTrailers = 3 => "response_trailers",
    }
}

abi_enum! {
    /// Which body a body function addresses.
    BodyKind, "body kind" {
        /// `0`: the request body.
        Request = 0 => "request",
        /// `1`: the response body.
        Response = 1 => "response",
    }
}

impl HeaderKind {
    /// True for the two trailer kinds.
    pub const fn is_trailers(self) -> bool {
        matches!(self, HeaderKind::RequestTrailers | HeaderKind::ResponseTrailers)
    }

    /// True for the kinds that belong to the request.
    pub const fn is_request(self) -> bool {
        matches!(self, HeaderKind::Request | HeaderKind::RequestTrailers)
    }
}

impl LogLevel {
    /// Parses `debug`, `info`, `warn`, `error` or `none` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.iter().copied().find(|l| l.as_str().eq_ignore_ascii_case(name))
    }
}

/// One feature bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Feature {
    /// `1`: the host buffers the request body so the guest can read it and
    /// the next handler still receives it.
    BufferRequest = 1,
    /// `2`: the host buffers the response so the guest can read and change
    /// status, headers and body in `handle_response`.
    BufferResponse = 2,
    /// `4`: request and response trailers are readable and writable.
    Trailers = 4,
}

impl Feature {
    /// The three features, by ascending bit.
    pub const ALL: [Feature; 3] = [Feature::BufferRequest, Feature::BufferResponse, Feature::Trailers];

    /// The name used in the specification.
    pub const fn as_str(self) -> &'static str {
        match self {
            Feature::BufferRequest => "buffer_request",
            Feature::BufferResponse => "buffer_response",
            Feature::Trailers => "trailers",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of known [`Feature`]s.
///
/// A `Features` value never holds unknown bits: [`Features::from_bits`]
/// refuses them and [`Features::split`] returns them apart, so a host cannot
/// echo an unknown bit back as enabled (a bug of the Go host, see
/// [`spec`](crate::spec)).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features(u32);

impl Features {
    /// No feature (the reserved value `0`).
    pub const NONE: Features = Features(0);
    /// `buffer_request`.
    pub const BUFFER_REQUEST: Features = Features(1);
    /// `buffer_response`.
    pub const BUFFER_RESPONSE: Features = Features(2);
    /// `trailers`.
    pub const TRAILERS: Features = Features(4);
    /// Every feature this ABI defines.
    pub const ALL: Features = Features(7);

    /// The bits, as the ABI passes them.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The known bits of `raw`, and the unknown ones apart.
    pub const fn split(raw: u32) -> (Features, u32) {
        (Features(raw & Self::ALL.0), raw & !Self::ALL.0)
    }

    /// `raw` as a set, or the unknown bits as an error.
    pub const fn from_bits(raw: u32) -> Result<Features, InvalidValue> {
        match Self::split(raw) {
            (f, 0) => Ok(f),
            (_, unknown) => Err(InvalidValue { what: "feature", value: unknown as i64 }),
        }
    }

    /// True when every feature of `other` is in `self`.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when `feature` is in the set.
    pub const fn has(self, feature: Feature) -> bool {
        self.0 & feature as u32 != 0
    }

    /// The features in either set.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// The features in both sets.
    pub const fn intersection(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// True for the empty set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The features, by ascending bit.
    pub fn iter(self) -> FeaturesIter {
        FeaturesIter { set: self, next: 0 }
    }
}

impl From<Feature> for Features {
    fn from(f: Feature) -> Features {
        Features(f as u32)
    }
}

impl core::ops::BitOr for Features {
    type Output = Features;
    fn bitor(self, rhs: Features) -> Features {
        self.union(rhs)
    }
}

impl core::ops::BitOrAssign for Features {
    fn bitor_assign(&mut self, rhs: Features) {
        *self = self.union(rhs);
    }
}

impl core::ops::BitAnd for Features {
    type Output = Features;
    fn bitand(self, rhs: Features) -> Features {
        self.intersection(rhs)
    }
}

impl FromIterator<Feature> for Features {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> Features {
        iter.into_iter().fold(Features::NONE, |s, f| s | f.into())
    }
}

impl IntoIterator for Features {
    type Item = Feature;
    type IntoIter = FeaturesIter;
    fn into_iter(self) -> FeaturesIter {
        self.iter()
    }
}

/// Iterator over the features of a [`Features`] set.
#[derive(Clone, Debug)]
pub struct FeaturesIter {
    set: Features,
    next: usize,
}

impl Iterator for FeaturesIter {
    type Item = Feature;
    fn next(&mut self) -> Option<Feature> {
        while self.next < Feature::ALL.len() {
            let f = Feature::ALL[self.next];
            self.next += 1;
            if self.set.has(f) {
                return Some(f);
            }
        }
        None
    }
}

impl fmt::Display for Features {
    /// `buffer_request|trailers`; the empty set prints as `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, feature) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(feature.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Features({self})")
    }
}

impl core::str::FromStr for Features {
    type Err = InvalidValue;
    /// Parses the [`Display`](fmt::Display) form: names joined by `|` or `,`, or `none`.
    fn from_str(s: &str) -> Result<Features, InvalidValue> {
        let mut set = Features::NONE;
        for part in s.split(['|', ',']).map(str::trim).filter(|p| !p.is_empty()) {
            if part == "none" {
                continue;
            }
            match Feature::ALL.iter().find(|f| f.as_str() == part) {
                Some(f) => set |= (*f).into(),
                None => return Err(InvalidValue { what: "feature", value: -1 }),
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn kinds_convert_and_name_bad_values() {
        assert_eq!(HeaderKind::try_from(3), Ok(HeaderKind::ResponseTrailers));
        let err = HeaderKind::try_from(4).unwrap_err();
        assert_eq!(err.to_string(), "invalid header kind: 4");
        assert_eq!(BodyKind::try_from(-1).unwrap_err().to_string(), "invalid body kind: -1");
        assert_eq!(LogLevel::try_from(-1), Ok(LogLevel::Debug));
        assert_eq!(LogLevel::try_from(4).unwrap_err().what, "log level");
        assert_eq!(LogLevel::from_name("WARN"), Some(LogLevel::Warn));
    }

    #[test]
    fn unknown_feature_bits_are_kept_apart() {
        // The Go host answers enable_features(1024) with 1031; we never report 1024.
        assert_eq!(Features::split(1024 | 7), (Features::ALL, 1024));
        assert_eq!(Features::from_bits(1024).unwrap_err().value, 1024);
        assert_eq!(Features::from_bits(5), Ok(Features::BUFFER_REQUEST | Features::TRAILERS));
    }

    #[test]
    fn features_display_and_iterate() {
        let f = Features::BUFFER_REQUEST | Features::TRAILERS;
        assert_eq!(f.to_string(), "buffer_request|trailers");
        assert_eq!(Features::NONE.to_string(), "none");
        assert!(f.contains(Features::TRAILERS));
        assert!(!f.contains(Features::BUFFER_RESPONSE));
        let v: std::vec::Vec<Feature> = f.iter().collect();
        assert_eq!(v, [Feature::BufferRequest, Feature::Trailers]);
        assert_eq!("buffer_request|trailers".parse::<Features>(), Ok(f));
        assert!("bogus".parse::<Features>().is_err());
    }
}
