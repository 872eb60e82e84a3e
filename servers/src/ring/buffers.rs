//! The memory a datagram worker lends the kernel: a provided buffer ring
//! (`IORING_REGISTER_PBUF_RING`, Linux 5.19) of buffers the kernel receives
//! into, and the `SENDMSG` headers of the echoes it sends from them.
//!
//! ## Who may touch a buffer, and when
//!
//! A buffer is the kernel's from the moment its descriptor is published in
//! the ring until a receive's CQE names it (`IORING_CQE_F_BUFFER`): until
//! then the kernel may write into it at any time, while no Rust reference
//! says so. From that CQE on it is the worker's — to read, and to echo from
//! (the kernel then only reads it) — until the worker gives it back
//! ([`BufferRing::give_back`]), once the echo's send has completed.
//!
//! So the buffers, and the ring of their descriptors, live in allocations
//! owned by [`BufferRing`] and addressed only through raw pointers taken
//! from the allocation itself ([`Lent`]), never through a reference to the
//! memory: the kernel's writes alias no `&[u8]`. The only references ever
//! made to a buffer ([`BufferRing::arrived`], [`BufferRing::with_payload`])
//! are made while the worker holds it, and dropped before the call returns.

use std::alloc::Layout;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, opcode, squeue, types};

/// The room for a source address in each buffer: a `sockaddr_in6`, the
/// larger of the two families.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// The header the kernel writes at the start of each buffer:
/// `struct io_uring_recvmsg_out`, four `u32` (namelen, controllen,
/// payloadlen, flags).
const OUT_HEADER_LEN: usize = 16;

/// Memory lent to the kernel: one zeroed allocation, owned by this value
/// and addressed only through raw pointers derived from the allocation
/// ([`Lent::at`]), so that the kernel may write into whatever part we have
/// lent it without breaking the promise of a Rust reference.
#[derive(Debug)]
struct Lent {
    base: NonNull<u8>,
    layout: Layout,
}

impl Lent {
    /// `size` zeroed bytes aligned to `align` (a power of two).
    fn zeroed(size: usize, align: usize) -> io::Result<Lent> {
        let layout = Layout::from_size_align(size.max(1), align).map_err(io::Error::other)?;
        // SAFETY: the layout's size is not zero.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(base).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Lent { base, layout })
    }

    /// A pointer `offset` bytes into the allocation, with the allocation's
    /// own provenance (no reference to the memory is made).
    fn at(&self, offset: usize) -> *mut u8 {
        assert!(offset <= self.layout.size(), "offset {offset} beyond {} bytes", self.layout.size());
        // SAFETY: within the allocation, or one past its end.
        unsafe { self.base.as_ptr().add(offset) }
    }

    /// The `len` bytes at `offset`, borrowed.
    ///
    /// # Safety
    ///
    /// Nobody — the kernel included — writes those bytes while the slice
    /// lives: they are not lent to the kernel, or it has handed them back.
    unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.layout.size()), "{offset}+{len} out of bounds");
        // SAFETY: in bounds (checked), initialised (zeroed, then written by
        // the kernel only), and by the caller's promise not written while
        // the slice lives.
        unsafe { std::slice::from_raw_parts(self.at(offset), len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout. Nothing uses it
        // any more: its owner's contract ([`BufferRing::register`]) is that
        // the ring it was lent to is gone first.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// A datagram the kernel received into a buffer of the ring, as found there
/// once its CQE has arrived: where its parts lie in the buffer, and what
/// they say. Holds no reference to the buffer.
#[derive(Debug, Clone)]
pub struct Arrived {
    /// The buffer it is in.
    pub bid: u16,
    /// Its length as sent: larger than what the buffer holds if it was cut.
    pub len: usize,
    /// It cannot be echoed whole: larger than the buffer (MSG_TRUNC), or
    /// (never for an IP address, which the room holds) its source cut short.
    pub cut: bool,
    /// Where it came from, for the echo and for logs.
    pub source: Source,
    /// The payload's place in the buffer.
    payload: Range<usize>,
    /// The source address's place in the buffer (a `sockaddr_in` or `_in6`).
    name: Range<usize>,
}

/// A datagram's source, decoded from the address the kernel wrote, for
/// logs: `(unknown)` if it was no IP address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Source(pub Option<SocketAddr>);

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("(unknown)"),
        }
    }
}

/// The `SENDMSG` of one echo: its header and its one iovec, pointing into
/// the buffer the datagram arrived in. One per buffer, at a fixed address
/// (a boxed slice): the kernel reads it when the send runs.
#[derive(Debug)]
struct SendSlot {
    header: libc::msghdr,
    iov: libc::iovec,
    to: Source,
}

/// A provided buffer ring, the buffers in it, and the header of the echo
/// each buffer may be sent from. (Not `Send`: it holds raw pointers; each
/// worker builds its own, in its thread.)
#[derive(Debug)]
pub struct BufferRing {
    /// `count` descriptors (`struct io_uring_buf`), page-aligned as the
    /// kernel requires; the ring's tail lives in the first one's reserved
    /// field. The kernel reads them; we write them.
    descriptors: Lent,
    /// The buffers, end to end, `buffer_len` bytes each.
    buffers: Lent,
    count: u16,
    buffer_len: usize,
    /// Our tail: descriptors published so far (wrapping).
    tail: u16,
    /// The multishot receive's template: only its name and control lengths
    /// matter, and they say how the kernel lays out each buffer.
    template: Box<libc::msghdr>,
    /// One send at most per buffer: indexed by buffer id.
    sends: Box<[SendSlot]>,
}

impl BufferRing {
    /// `count` buffers (a power of two, as the kernel requires) each with
    /// room for the kernel's header, a source address and `payload_len`
    /// bytes of payload; every buffer is in the ring, lent to the kernel
    /// once the ring is registered.
    pub fn new(count: u16, payload_len: usize) -> io::Result<BufferRing> {
        assert!(count.is_power_of_two(), "a buffer ring holds a power of two of buffers, not {count}");
        let buffer_len = (OUT_HEADER_LEN + NAME_LEN + payload_len).next_multiple_of(16);
        let descriptors = Lent::zeroed(usize::from(count) * std::mem::size_of::<types::BufRingEntry>(), 4096)?;
        let buffers = Lent::zeroed(usize::from(count) * buffer_len, 16)?;
        // SAFETY: an all-zero msghdr is a valid empty one (no name, no
        // iovec, no control data); the fields that matter are set below.
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = NAME_LEN as u32;
        let sends = (0..count)
            .map(|_| SendSlot {
                // SAFETY: as above; filled in before each send.
                header: unsafe { std::mem::zeroed() },
                iov: libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
                to: Source::default(),
            })
            .collect();
        let mut ring = BufferRing { descriptors, buffers, count, buffer_len, tail: 0, template, sends };
        for bid in 0..count {
            ring.put(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `ring` as buffer group `group`: from then on
    /// the kernel takes buffers from it, and writes into them.
    ///
    /// # Safety
    ///
    /// `ring` must be dropped (which unregisters the group) before `self`:
    /// the kernel may write into the buffers for as long as it holds them.
    pub unsafe fn register(&self, ring: &IoUring, group: u16) -> io::Result<()> {
        // SAFETY: the descriptors are valid for `count` entries, and stay so
        // until `self` drops, which by the caller's promise is after `ring`.
        unsafe { ring.submitter().register_buf_ring_with_flags(self.descriptors.at(0) as u64, self.count, group, 0) }
    }

    /// The template of the multishot `RECVMSG` that fills these buffers.
    pub fn template(&self) -> &libc::msghdr {
        &self.template
    }

    /// The datagram that a receive's CQE says the kernel put into buffer
    /// `bid`, `bytes` long (header and address included); `None` if it does
    /// not parse.
    ///
    /// # Safety
    ///
    /// The kernel has handed buffer `bid` to us (the CQE of a receive that
    /// selected it), and it has not been given back since.
    pub unsafe fn arrived(&self, bid: u16, bytes: usize) -> Option<Arrived> {
        if bid >= self.count || bytes > self.buffer_len {
            return None;
        }
        // SAFETY: the buffer is ours (the caller's promise) and `bytes` lie
        // within it; the slice is dropped before this function returns.
        let buffer = unsafe { self.buffers.slice(usize::from(bid) * self.buffer_len, bytes) };
        let out = types::RecvMsgOut::parse(buffer, &self.template).ok()?;
        let place = |part: &[u8]| {
            let start = part.as_ptr() as usize - buffer.as_ptr() as usize;
            start..start + part.len()
        };
        let len = out.incoming_payload_len() as usize;
        Some(Arrived {
            bid,
            len,
            cut: out.is_payload_truncated() || out.payload_data().len() != len || out.is_name_data_truncated(),
            source: Source(sockaddr_of(out.name_data())),
            payload: place(out.payload_data()),
            name: place(out.name_data()),
        })
    }

    /// Calls `f` with the payload of `datagram`, borrowed for the call only
    /// (the work of `--work` reads it before the echo).
    ///
    /// # Safety
    ///
    /// As for [`BufferRing::arrived`]: the kernel has handed the buffer of
    /// `datagram` to us and it has not been given back since (a send from
    /// it may be in flight: the kernel only reads it then).
    pub unsafe fn with_payload<R>(&self, datagram: &Arrived, f: impl FnOnce(&[u8]) -> R) -> R {
        let start = usize::from(datagram.bid) * self.buffer_len + datagram.payload.start;
        // SAFETY: the buffer is ours (the caller's promise), and `arrived`
        // found the payload within it; the slice lives only through `f`.
        f(unsafe { self.buffers.slice(start, datagram.payload.len()) })
    }

    /// The `SENDMSG` that echoes `datagram` to its source straight from
    /// its buffer (no copy), with the buffer id as its `user_data`. The
    /// entry points into memory `self` owns: its header and iovec, and the
    /// buffer, untouched until the send's CQE ([`BufferRing::echoed`]).
    pub fn echo(&mut self, datagram: &Arrived, socket: types::Fd) -> squeue::Entry {
        let start = usize::from(datagram.bid) * self.buffer_len;
        let slot = &mut self.sends[usize::from(datagram.bid)];
        slot.iov = libc::iovec {
            iov_base: self.buffers.at(start + datagram.payload.start).cast(),
            iov_len: datagram.payload.len(),
        };
        slot.header.msg_name = self.buffers.at(start + datagram.name.start).cast();
        slot.header.msg_namelen = datagram.name.len() as u32;
        slot.header.msg_iov = &mut slot.iov;
        slot.header.msg_iovlen = 1;
        slot.to = datagram.source;
        opcode::SendMsg::new(socket, &slot.header)
            .build()
            .user_data(super::Token::Op(usize::from(datagram.bid)).user_data())
    }

    /// The echo sent from buffer `bid`: its length and destination; `None`
    /// for no buffer of this ring.
    pub fn echoed(&self, bid: u16) -> Option<(usize, Source)> {
        self.sends.get(usize::from(bid)).map(|slot| (slot.iov.iov_len, slot.to))
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn give_back(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
    }

    /// Writes buffer `bid`'s descriptor at the tail (not yet visible to
    /// the kernel: [`BufferRing::publish`]).
    fn put(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let entry =
            self.descriptors.at(index * std::mem::size_of::<types::BufRingEntry>()).cast::<types::BufRingEntry>();
        // SAFETY: `entry` is the descriptor at `index`, within the ring's
        // `count` entries and aligned (the ring is page-aligned, entries are
        // 16 bytes). The kernel reads only the entries between its head and
        // our published tail, and this one is beyond the tail until
        // `publish`: nobody else touches it now.
        let entry = unsafe { &mut *entry };
        entry.set_addr(self.buffers.at(usize::from(bid) * self.buffer_len) as u64);
        entry.set_len(self.buffer_len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every descriptor put so far visible to the kernel.
    fn publish(&self) {
        let base = self.descriptors.at(0).cast::<types::BufRingEntry>();
        // SAFETY: `base` is the ring's first entry, valid and initialised;
        // its reserved field is the ring's tail (io_uring_buf_ring), a u16
        // that the kernel reads concurrently, aligned as a u16 is: hence the
        // atomic store, with Release so that the descriptors written before
        // it are seen first.
        unsafe {
            let tail = types::BufRingEntry::tail(base).cast_mut().cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

/// Decodes a `sockaddr_in` or `sockaddr_in6` from its bytes.
fn sockaddr_of(bytes: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    if family == libc::AF_INET {
        let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::from((ip, port)))
    } else if family == libc::AF_INET6 {
        let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
        Some(SocketAddr::from((ip, port)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_decode_from_the_kernel_bytes() {
        let v4: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        for addr in [v4, v6] {
            let storage = nix::sys::socket::SockaddrStorage::from(addr);
            let len = nix::sys::socket::SockaddrLike::len(&storage) as usize;
            // SAFETY: `storage` holds `len` initialised bytes of a sockaddr.
            let bytes = unsafe {
                std::slice::from_raw_parts(nix::sys::socket::SockaddrLike::as_ptr(&storage).cast::<u8>(), len)
            };
            assert_eq!(sockaddr_of(bytes), Some(addr));
        }
        assert_eq!(sockaddr_of(&[0u8; 3]), None);
    }

    /// The descriptor at `index`, read back.
    fn descriptor(ring: &BufferRing, index: u16) -> (u64, u32, u16) {
        let entry = ring.descriptors.at(usize::from(index) * std::mem::size_of::<types::BufRingEntry>());
        // SAFETY: within the ring, initialised, and no kernel holds it.
        let entry = unsafe { &*entry.cast::<types::BufRingEntry>() };
        (entry.addr(), entry.len(), entry.bid())
    }

    /// What the kernel would read: the tail, then every descriptor before
    /// it, each naming its own buffer whole.
    #[test]
    fn every_buffer_is_published_and_given_back_at_the_tail() {
        let mut ring = BufferRing::new(4, 100).unwrap();
        let buffer_len = ring.buffer_len;
        assert_eq!(buffer_len % 16, 0);
        assert!(buffer_len >= OUT_HEADER_LEN + NAME_LEN + 100);
        let tail = || {
            // SAFETY: the first entry's reserved field is the tail; nothing else writes it.
            unsafe { *types::BufRingEntry::tail(ring.descriptors.at(0).cast()) }
        };
        assert_eq!(tail(), 4);
        for bid in 0..4 {
            let addr = ring.buffers.at(usize::from(bid) * buffer_len) as u64;
            assert_eq!(descriptor(&ring, bid), (addr, buffer_len as u32, bid));
        }
        ring.give_back(2);
        // The tail wraps round the ring: entry 0 now names buffer 2.
        let addr = ring.buffers.at(2 * buffer_len) as u64;
        assert_eq!((ring.tail, descriptor(&ring, 0)), (5, (addr, buffer_len as u32, 2)));
    }
}
