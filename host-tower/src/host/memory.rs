//! How the core reaches a guest's linear memory, whatever the engine.

use super::HostError;
use std::borrow::Cow;

/// A guest's linear memory, as an engine backend lends it to the core for
/// the duration of one host call.
pub(crate) trait GuestMemory {
    /// The memory's current size in bytes.
    fn size(&self) -> u64;

    /// Whether `len` bytes at `ptr` lie entirely inside the memory; checked
    /// before the host allocates or consumes anything on the guest's behalf.
    fn check(&self, ptr: u32, len: u32) -> Result<(), HostError> {
        if ptr as u64 + len as u64 > self.size() {
            return Err(HostError::OutOfBounds { ptr, len });
        }
        Ok(())
    }

    /// `len` bytes at `ptr`, all of them, or [`HostError::OutOfBounds`]:
    /// never fewer.
    fn read(&self, ptr: u32, len: u32) -> Result<Cow<'_, [u8]>, HostError>;

    /// Writes `bytes` at `ptr`, or fails with [`HostError::OutOfBounds`]
    /// without writing anything.
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), HostError>;

    /// Lets `fill` write exactly `len` bytes at `ptr`. Backends that can lend
    /// the memory directly override this to avoid the scratch buffer, which
    /// is allocated only after the range is checked.
    fn write_with(&mut self, ptr: u32, len: u32, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), HostError> {
        self.check(ptr, len)?;
        let mut scratch = vec![0; len as usize];
        fill(&mut scratch);
        self.write(ptr, &scratch)
    }
}

/// Memory lent as one mutable slice (wasmtime lends it this way).
#[cfg_attr(not(feature = "wasmtime"), allow(dead_code))]
pub(crate) struct SliceMemory<'a>(pub(crate) &'a mut [u8]);

#[cfg_attr(not(feature = "wasmtime"), allow(dead_code))]
fn range(ptr: u32, len: u32, size: usize) -> Result<std::ops::Range<usize>, HostError> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(HostError::OutOfBounds { ptr, len })?;
    if end > size {
        return Err(HostError::OutOfBounds { ptr, len });
    }
    Ok(start..end)
}

impl GuestMemory for SliceMemory<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read(&self, ptr: u32, len: u32) -> Result<Cow<'_, [u8]>, HostError> {
        Ok(Cow::Borrowed(&self.0[range(ptr, len, self.0.len())?]))
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), HostError> {
        let len = u32::try_from(bytes.len()).map_err(|_| HostError::OutOfBounds { ptr, len: u32::MAX })?;
        let r = range(ptr, len, self.0.len())?;
        self.0[r].copy_from_slice(bytes);
        Ok(())
    }

    fn write_with(&mut self, ptr: u32, len: u32, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), HostError> {
        let r = range(ptr, len, self.0.len())?;
        fill(&mut self.0[r]);
        Ok(())
    }
}
