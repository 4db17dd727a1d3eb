//! Fragments: the header, [`Fragment`] and the [`Fragmenter`] that cuts a message.

use super::*;

/// The fields of a fragment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentHeader {
    /// The sender's stream: chosen at random when a server starts, so a client tells a
    /// restarted server's frames from the old ones.
    pub stream: u32,
    /// The message's sequence number in its stream, strictly increasing over the messages
    /// the sender sends (gaps allowed). A receiver delivers frames in increasing order.
    pub frame: u64,
    /// This fragment's index, `0..count`.
    pub index: u32,
    /// How many fragments the message has: `total_len / fragment_size` rounded up.
    pub count: u32,
    /// Bytes of the whole message.
    pub total_len: u32,
    /// Payload bytes of every fragment but the last, which has the rest; fragment `i`
    /// carries the message's bytes from `i · fragment_size`.
    pub fragment_size: u32,
}

impl FragmentHeader {
    /// Checks the fields against each other: `fragment_size` in range, a non-empty
    /// message, `count` consistent with the lengths and `index` below it. After that,
    /// [`Self::offset`] and [`Self::payload_len`] cannot overflow.
    pub fn check(&self) -> Result<(), FragmentError> {
        let size = self.fragment_size;
        if !(MIN_FRAGMENT_SIZE..=MAX_FRAGMENT_SIZE).contains(&(size as usize)) {
            return Err(FragmentError::FragmentSize(size));
        }
        if self.total_len == 0 {
            return Err(FragmentError::EmptyMessage);
        }
        let expected = self.total_len.div_ceil(size);
        if self.count != expected {
            return Err(FragmentError::Count {
                count: self.count,
                expected,
            });
        }
        if self.index >= self.count {
            return Err(FragmentError::Index {
                index: self.index,
                count: self.count,
            });
        }
        Ok(())
    }

    /// Where this fragment's payload goes in the message (for a checked header).
    pub fn offset(&self) -> usize {
        self.index as usize * self.fragment_size as usize
    }

    /// Bytes of payload this fragment carries (for a checked header).
    pub fn payload_len(&self) -> usize {
        let rest = (self.total_len as usize).saturating_sub(self.offset());
        rest.min(self.fragment_size as usize)
    }

    /// The encoded header.
    pub fn encode(&self) -> [u8; FRAGMENT_HEADER_SIZE] {
        let raw = RawFragment {
            common: RawCommon::new(Kind::Fragment),
            stream: self.stream.into(),
            total_len: self.total_len.into(),
            frame: self.frame.into(),
            index: self.index.into(),
            count: self.count.into(),
            fragment_size: self.fragment_size.into(),
        };
        let mut out = [0; FRAGMENT_HEADER_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// One fragment: its header and its piece of the message (borrowed from the message when
/// encoding, from the datagram when parsed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The header's fields.
    pub header: FragmentHeader,
    /// The piece of the message, `header.payload_len()` bytes.
    pub payload: &'a [u8],
}

impl Fragment<'_> {
    /// Size of the datagram: header plus payload.
    pub fn datagram_len(&self) -> usize {
        FRAGMENT_HEADER_SIZE + self.payload.len()
    }

    /// Writes the datagram at the start of `buf` and returns its length.
    pub fn write_into(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let len = self.datagram_len();
        check_buffer(buf, len)?;
        buf[..FRAGMENT_HEADER_SIZE].copy_from_slice(&self.header.encode());
        buf[FRAGMENT_HEADER_SIZE..len].copy_from_slice(self.payload);
        Ok(len)
    }

    /// The datagram as a new vector (tests and simple senders).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.datagram_len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(self.payload);
        out
    }
}

impl fmt::Debug for Fragment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fragment")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Cuts one message into fragments of at most `mtu` bytes each: an iterator of
/// [`Fragment`]s that borrow the message, so nothing is copied or allocated until the
/// caller writes a fragment out (vectored: [`FragmentHeader::encode`] then the payload;
/// or into its own buffer: [`Fragment::write_into`]). [`Fragmenter::fragment`] gives any
/// fragment again, for a sender that paces or interleaves several subscribers.
///
/// The fragments of one message are the same for every subscriber, so a server cuts a
/// message once and sends the same datagrams to each.
#[derive(Clone)]
pub struct Fragmenter<'a> {
    message: &'a [u8],
    stream: u32,
    frame: u64,
    fragment_size: u32,
    count: u32,
    next: u32,
}

impl<'a> Fragmenter<'a> {
    /// A fragmenter for `message`, frame `frame` of stream `stream`, in datagrams of at
    /// most `mtu` bytes ([`MIN_MTU`]`..=`[`MAX_MTU`]). Every fragment but the last carries
    /// `mtu − 36` bytes of the message.
    pub fn new(
        message: &'a [u8],
        stream: u32,
        frame: u64,
        mtu: usize,
    ) -> Result<Self, EncodeError> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(EncodeError::Mtu(mtu));
        }
        if message.is_empty() {
            return Err(EncodeError::EmptyMessage);
        }
        let total = u32::try_from(message.len())
            .map_err(|_| EncodeError::MessageTooLarge(message.len()))?;
        let fragment_size = (mtu - FRAGMENT_HEADER_SIZE) as u32;
        Ok(Fragmenter {
            message,
            stream,
            frame,
            fragment_size,
            count: total.div_ceil(fragment_size),
            next: 0,
        })
    }

    /// How many fragments the message makes, in all (the iterator's `len()` is how many
    /// are left).
    pub fn fragment_count(&self) -> u32 {
        self.count
    }

    /// Payload bytes of every fragment but the last.
    pub fn fragment_size(&self) -> usize {
        self.fragment_size as usize
    }

    /// Fragment `index`, if there is one.
    pub fn fragment(&self, index: u32) -> Option<Fragment<'a>> {
        if index >= self.count {
            return None;
        }
        let header = FragmentHeader {
            stream: self.stream,
            frame: self.frame,
            index,
            count: self.count,
            total_len: self.message.len() as u32,
            fragment_size: self.fragment_size,
        };
        let at = header.offset();
        Some(Fragment {
            header,
            payload: &self.message[at..at + header.payload_len()],
        })
    }

    /// Writes the next fragment's datagram into `buf` and returns its length, or `None`
    /// when all were written. A buffer of `mtu` bytes always suffices.
    pub fn write_next(&mut self, buf: &mut [u8]) -> Option<Result<usize, EncodeError>> {
        let fragment = self.fragment(self.next)?;
        let written = fragment.write_into(buf);
        if written.is_ok() {
            self.next += 1;
        }
        Some(written)
    }
}

impl<'a> Iterator for Fragmenter<'a> {
    type Item = Fragment<'a>;

    fn next(&mut self) -> Option<Fragment<'a>> {
        let fragment = self.fragment(self.next)?;
        self.next += 1;
        Some(fragment)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Fragmenter<'_> {}

impl fmt::Debug for Fragmenter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fragmenter")
            .field("stream", &self.stream)
            .field("frame", &self.frame)
            .field("message_len", &self.message.len())
            .field("fragment_size", &self.fragment_size)
            .field("count", &self.count)
            .field("next", &self.next)
            .finish()
    }
}
