//! The UDP framing, driven by hand.

use super::*;

/// The fragment of the worked example in `docs/protocol.md`, 10: fragment 1 of 3 of a
/// 3000-byte message at the default MTU.
fn example_header() -> FragmentHeader {
    FragmentHeader {
        stream: 0x1A2B_3C4D,
        frame: 1234,
        index: 1,
        count: 3,
        total_len: 3000,
        fragment_size: (DEFAULT_MTU - FRAGMENT_HEADER_SIZE) as u32,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The example header as the document lists it: one field per line.
fn annotated(h: &FragmentHeader, bytes: &[u8]) -> String {
    let mut out = String::from("```text\noffset  bytes                    field\n");
    let mut at = 0;
    let mut line = |len: usize, what: String| {
        out += &format!("{at:>6}  {:<23}  {what}\n", hex(&bytes[at..at + len]));
        at += len;
    };
    line(4, "magic \"CAMU\"".into());
    line(1, format!("version {VERSION}"));
    line(1, format!("kind {} (fragment)", Kind::Fragment.code()));
    line(2, "reserved".into());
    line(4, format!("stream 0x{:08x}", h.stream));
    line(4, format!("total_len {}", h.total_len));
    line(8, format!("frame {}", h.frame));
    line(4, format!("index {}", h.index));
    line(4, format!("count {}", h.count));
    line(4, format!("fragment_size {}", h.fragment_size));
    assert_eq!(at, FRAGMENT_HEADER_SIZE);
    out + "```\n"
}

#[test]
fn doc_example_matches_the_encoder() {
    let doc = include_str!("../../../docs/protocol.md");
    let h = example_header();
    let bytes = h.encode();
    assert_eq!(h.offset(), 1164);
    assert_eq!(h.payload_len(), 1164);
    let block = annotated(&h, &bytes);
    assert!(
        doc.contains(&block),
        "docs/protocol.md lacks this block (paste it in):\n{block}"
    );
    let dump = format!("```text\n{}\n```\n", hex(&bytes));
    assert!(
        doc.contains(&dump),
        "docs/protocol.md lacks this block (paste it in):\n{dump}"
    );
}

#[test]
fn layout_offsets() {
    let message: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let fragmenter = Fragmenter::new(&message, 0x1A2B_3C4D, 1234, DEFAULT_MTU).unwrap();
    let bytes = fragmenter.fragment(1).unwrap().to_vec();
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(&bytes[0..4], b"CAMU");
    assert_eq!(bytes[4], 1);
    assert_eq!(bytes[5], 1);
    assert_eq!(&bytes[6..8], &[0, 0]);
    assert_eq!(u32_at(8), 0x1A2B_3C4D);
    assert_eq!(u32_at(12), 3000);
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 1234);
    assert_eq!(u32_at(24), 1);
    assert_eq!(u32_at(28), 3);
    assert_eq!(u32_at(32), 1164);
    assert_eq!(bytes.len(), DEFAULT_MTU);
    assert_eq!(&bytes[36..], &message[1164..2328]);
    assert_eq!(bytes[..36], example_header().encode());

    let sub = Subscribe {
        cookie: [7; COOKIE_LEN],
        mtu: 1400,
        token: b"tok",
        settings: br#"{"fps":10}"#,
    }
    .to_vec()
    .unwrap();
    assert_eq!(sub.len(), MIN_REQUEST_SIZE);
    assert_eq!(&sub[..8], b"CAMU\x01\x02\x00\x00");
    assert_eq!(&sub[8..24], &[7; 16]);
    assert_eq!(&sub[24..28], &[3, 0, 10, 0]);
    assert_eq!(u32::from_le_bytes(sub[28..32].try_into().unwrap()), 1400);
    assert_eq!(&sub[32..35], b"tok");
    assert_eq!(&sub[35..45], br#"{"fps":10}"#);
    assert!(sub[45..].iter().all(|&b| b == 0));

    let ka = Keepalive { cookie: [9; 16] }.encode();
    assert_eq!(&ka[..8], b"CAMU\x01\x03\x00\x00");
    assert_eq!(&ka[8..24], &[9; 16]);
    assert!(ka[24..].iter().all(|&b| b == 0));
    assert_eq!(Unsubscribe { cookie: [9; 16] }.encode()[5], 4);

    let acc = Accepted {
        cookie: [1; 16],
        stream: 5,
        mtu: 1200,
        keepalive_ms: 1000,
        timeout_ms: 5000,
    }
    .encode();
    assert_eq!(&acc[..8], b"CAMU\x01\x05\x00\x00");
    let a32 = |o: usize| u32::from_le_bytes(acc[o..o + 4].try_into().unwrap());
    assert_eq!((a32(24), a32(28), a32(32), a32(36)), (5, 1200, 1000, 5000));
    let ch = Challenge { cookie: [2; 16] }.encode();
    assert_eq!(&ch[..8], b"CAMU\x01\x06\x00\x00");
    let re = Refused {
        reason: RefuseReason::Full,
    }
    .encode();
    assert_eq!(re, *b"CAMU\x01\x07\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00");
}

#[test]
fn every_request_and_reply_round_trips() {
    let cookie = *b"0123456789abcdef";
    let sub = Subscribe {
        cookie,
        mtu: 0,
        token: b"secret",
        settings: br#"{"quality":"auto","cameras":[0,2]}"#,
    };
    let bytes = sub.to_vec().unwrap();
    assert_eq!(parse(&bytes), Ok(Datagram::Subscribe(sub)));
    let update = sub.settings_update().unwrap();
    assert_eq!(update.cameras.map(|c| c.contains(2)), Some(true));
    let empty = Subscribe {
        settings: b"",
        ..sub
    };
    assert_eq!(empty.settings_update(), Ok(SettingsUpdate::default()));
    let bad = Subscribe {
        settings: br#"{"fps":-1}"#,
        ..sub
    };
    assert!(matches!(bad.settings_update(), Err(ControlError::Json(_))));
    let longest = Subscribe {
        cookie,
        mtu: MAX_MTU as u32,
        token: &[b't'; MAX_TOKEN_LEN],
        settings: &[b' '; MAX_SETTINGS_LEN],
    };
    let bytes = longest.to_vec().unwrap();
    assert_eq!(bytes.len(), MAX_REQUEST_SIZE);
    assert_eq!(parse(&bytes), Ok(Datagram::Subscribe(longest)));

    let ka = Keepalive { cookie };
    assert_eq!(parse(&ka.encode()), Ok(Datagram::Keepalive(ka)));
    let un = Unsubscribe { cookie };
    assert_eq!(parse(&un.encode()), Ok(Datagram::Unsubscribe(un)));
    let acc = Accepted {
        cookie,
        stream: u32::MAX,
        mtu: MIN_MTU as u32,
        keepalive_ms: DEFAULT_KEEPALIVE_MS,
        timeout_ms: DEFAULT_SUBSCRIPTION_TIMEOUT_MS,
    };
    assert_eq!(parse(&acc.encode()), Ok(Datagram::Accepted(acc)));
    let ch = Challenge { cookie };
    assert_eq!(parse(&ch.encode()), Ok(Datagram::Challenge(ch)));
    for code in 0..8 {
        let re = Refused {
            reason: RefuseReason::from_code(code),
        };
        assert_eq!(re.reason.code(), code);
        assert_eq!(parse(&re.encode()), Ok(Datagram::Refused(re)));
    }
    // Replies may grow later fields: bytes after the fixed part are ignored.
    let mut longer = acc.encode().to_vec();
    longer.extend_from_slice(&[0xEE; 8]);
    assert_eq!(parse(&longer), Ok(Datagram::Accepted(acc)));
    for kind in 1..=7 {
        assert_eq!(Kind::from_code(kind).unwrap().code(), kind);
    }
    assert_eq!(Kind::from_code(0), None);
    assert_eq!(Kind::from_code(8), None);
}

#[test]
fn every_encode_error() {
    let m = [1u8; 10];
    assert_eq!(
        Fragmenter::new(&m, 0, 0, 575).unwrap_err(),
        EncodeError::Mtu(575)
    );
    assert_eq!(
        Fragmenter::new(&m, 0, 0, 65_508).unwrap_err(),
        EncodeError::Mtu(65_508)
    );
    assert_eq!(
        Fragmenter::new(&[], 0, 0, 1200).unwrap_err(),
        EncodeError::EmptyMessage
    );
    let mut f = Fragmenter::new(&m, 0, 0, 1200).unwrap();
    let mut small = [0u8; 45];
    assert_eq!(
        f.write_next(&mut small),
        Some(Err(EncodeError::BufferTooSmall {
            needed: 46,
            available: 45
        }))
    );
    let mut buf = [0u8; 1200];
    assert_eq!(f.write_next(&mut buf), Some(Ok(46)));
    assert_eq!(f.write_next(&mut buf), None);
    let sub = Subscribe {
        cookie: [0; 16],
        mtu: 0,
        token: &[0; MAX_TOKEN_LEN + 1],
        settings: b"",
    };
    assert_eq!(sub.to_vec(), Err(EncodeError::TokenTooLong(129)));
    let sub = Subscribe {
        token: b"",
        settings: &[0; MAX_SETTINGS_LEN + 1],
        ..sub
    };
    assert_eq!(sub.to_vec(), Err(EncodeError::SettingsTooLong(385)));
    let sub = Subscribe {
        settings: b"",
        mtu: 100,
        ..sub
    };
    assert_eq!(sub.to_vec(), Err(EncodeError::Mtu(100)));
    let sub = Subscribe { mtu: 0, ..sub };
    assert_eq!(
        sub.encode_into(&mut [0; 63]),
        Err(EncodeError::BufferTooSmall {
            needed: 64,
            available: 63
        })
    );
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn every_parse_error() {
    let message = [0xAB; 3000];
    let good = Fragmenter::new(&message, 1, 2, DEFAULT_MTU)
        .unwrap()
        .fragment(2)
        .unwrap()
        .to_vec();
    assert_eq!(good.len(), 36 + 3000 - 2 * 1164);
    assert!(parse(&good).is_ok());
    let truncated = |needed, actual| DatagramError::Truncated { needed, actual };
    assert_eq!(parse(b""), Err(truncated(8, 0)));
    assert_eq!(parse(b"CAM"), Err(truncated(8, 3)));
    assert_eq!(parse(b"CAMU"), Err(truncated(8, 4)));
    assert_eq!(parse(b"CAMU\x01"), Err(truncated(8, 5)));
    assert_eq!(parse(b"CAMF\x01\x00\x00\x00"), Err(DatagramError::BadMagic));
    assert_eq!(parse(b"X"), Err(DatagramError::BadMagic));
    assert_eq!(parse(b"CAMU\x02"), Err(DatagramError::Version { found: 2 }));
    assert_eq!(parse(b"CAMU\x01\x00"), Err(DatagramError::UnknownKind(0)));
    assert_eq!(parse(b"CAMU\x01\x08"), Err(DatagramError::UnknownKind(8)));
    assert_eq!(parse(&good[..35]), Err(truncated(36, 35)));

    let frag = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        edit(&mut b);
        parse(&b).map(|_| ())
    };
    let ferr = |e: FragmentError| Err::<(), _>(DatagramError::Fragment(e));
    assert_eq!(
        frag(&|b| put32(b, 32, 539)),
        ferr(FragmentError::FragmentSize(539))
    );
    assert_eq!(
        frag(&|b| put32(b, 32, 65_472)),
        ferr(FragmentError::FragmentSize(65_472))
    );
    assert_eq!(
        frag(&|b| put32(b, 12, 0)),
        ferr(FragmentError::EmptyMessage)
    );
    assert_eq!(
        frag(&|b| put32(b, 28, 4)),
        ferr(FragmentError::Count {
            count: 4,
            expected: 3
        })
    );
    assert_eq!(
        frag(&|b| put32(b, 12, u32::MAX)),
        ferr(FragmentError::Count {
            count: 3,
            expected: u32::MAX.div_ceil(1164)
        })
    );
    assert_eq!(
        frag(&|b| put32(b, 24, 3)),
        ferr(FragmentError::Index { index: 3, count: 3 })
    );
    assert_eq!(
        frag(&|b| b.push(0)),
        ferr(FragmentError::PayloadLength {
            expected: 672,
            actual: 673
        })
    );
    assert_eq!(
        frag(&|b| {
            b.pop();
        }),
        ferr(FragmentError::PayloadLength {
            expected: 672,
            actual: 671
        })
    );
    // Claiming to be fragment 1 makes it a full-size fragment that is too short.
    assert_eq!(
        frag(&|b| put32(b, 24, 1)),
        ferr(FragmentError::PayloadLength {
            expected: 1164,
            actual: 672
        })
    );
    // The reserved bytes are ignored.
    assert!(frag(&|b| b[6] = 0xFF).is_ok());

    let sub = Subscribe {
        cookie: [0; 16],
        mtu: 0,
        token: b"t",
        settings: b"{}",
    }
    .to_vec()
    .unwrap();
    assert_eq!(parse(&sub[..63]), Err(DatagramError::RequestTooShort(63)));
    assert_eq!(parse(&sub[..31]), Err(truncated(32, 31)));
    let mut long = sub.clone();
    long.resize(MAX_REQUEST_SIZE + 1, 0);
    assert_eq!(parse(&long), Err(DatagramError::RequestTooLong(545)));
    let with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = sub.clone();
        edit(&mut b);
        parse(&b).map(|_| ())
    };
    assert_eq!(
        with(&|b| b[24..26].copy_from_slice(&129u16.to_le_bytes())),
        Err(DatagramError::TokenTooLong(129))
    );
    assert_eq!(
        with(&|b| b[26..28].copy_from_slice(&385u16.to_le_bytes())),
        Err(DatagramError::SettingsTooLong(385))
    );
    assert_eq!(
        with(&|b| b[26..28].copy_from_slice(&32u16.to_le_bytes())),
        Err(DatagramError::FieldsPastEnd {
            needed: 65,
            actual: 64
        })
    );
    assert_eq!(with(&|b| put32(b, 28, 575)), Err(DatagramError::Mtu(575)));
    assert_eq!(
        with(&|b| put32(b, 28, 65_508)),
        Err(DatagramError::Mtu(65_508))
    );
    let ka = Keepalive { cookie: [0; 16] }.encode();
    assert_eq!(parse(&ka[..63]), Err(DatagramError::RequestTooShort(63)));
    assert_eq!(parse(&ka[..23]), Err(truncated(24, 23)));
    let acc = Accepted {
        cookie: [0; 16],
        stream: 0,
        mtu: 1200,
        keepalive_ms: 0,
        timeout_ms: 0,
    }
    .encode();
    assert_eq!(parse(&acc[..39]), Err(truncated(40, 39)));
    let mut bad = acc;
    put32(&mut bad, 28, 0);
    assert_eq!(parse(&bad), Err(DatagramError::Mtu(0)));
    assert_eq!(
        parse(
            &Refused {
                reason: RefuseReason::Full
            }
            .encode()[..15]
        ),
        Err(truncated(16, 15))
    );

    assert_eq!(
        parse_fragment(&ka),
        Err(DatagramError::UnexpectedKind(Kind::Keepalive))
    );
}

/// Anti-amplification: whatever the server answers to a request, including a refusal of
/// a malformed one, is no larger than the request.
#[test]
fn replies_never_exceed_their_request() {
    let replies = [
        Accepted {
            cookie: [0; 16],
            stream: 0,
            mtu: 1200,
            keepalive_ms: 0,
            timeout_ms: 0,
        }
        .encode()
        .len(),
        Challenge { cookie: [0; 16] }.encode().len(),
        Refused {
            reason: RefuseReason::Full,
        }
        .encode()
        .len(),
    ];
    assert_eq!(replies.into_iter().max(), Some(MAX_REPLY_SIZE));
    let mut rng = fastrand::Rng::with_seed(0xA3F1);
    let (mut requests, mut refusals) = (0, 0);
    for _ in 0..20_000 {
        let len = rng.usize(..700);
        let mut bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        if bytes.len() >= 8 && rng.u8(..4) != 0 {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4] = if rng.u8(..8) == 0 { 2 } else { VERSION };
            bytes[5] = rng.u8(1..5);
            if bytes.len() >= 28 && rng.bool() {
                bytes[24] = rng.u8(..);
                bytes[25] = 0;
                bytes[26] = rng.u8(..);
                bytes[27] = rng.u8(..2);
            }
        }
        match parse(&bytes) {
            Ok(d) if d.kind().is_request() => {
                requests += 1;
                assert!(MAX_REPLY_SIZE <= bytes.len());
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(r) = refusal_for(&bytes, &e) {
                    refusals += 1;
                    assert!(r.encode().len() <= bytes.len(), "{e:?}");
                }
            }
        }
    }
    assert!(requests > 100 && refusals > 100, "{requests} {refusals}");
    // Silence for garbage and for short requests.
    let short = Keepalive { cookie: [0; 16] }.encode();
    let e = parse(&short[..40]).unwrap_err();
    assert_eq!(refusal_for(&short[..40], &e), None);
    let mut v2 = short;
    v2[4] = 2;
    let e = parse(&v2).unwrap_err();
    assert_eq!(
        refusal_for(&v2, &e),
        Some(Refused {
            reason: RefuseReason::UnsupportedVersion
        })
    );
    let mut bad_mtu = Subscribe {
        cookie: [0; 16],
        mtu: 0,
        token: b"",
        settings: b"",
    }
    .to_vec()
    .unwrap();
    put32(&mut bad_mtu, 28, 1);
    let e = parse(&bad_mtu).unwrap_err();
    assert_eq!(
        refusal_for(&bad_mtu, &e),
        Some(Refused {
            reason: RefuseReason::BadRequest
        })
    );
    let noise = [0u8; 100];
    assert_eq!(refusal_for(&noise, &parse(&noise).unwrap_err()), None);
}

#[test]
fn fragments_cover_the_message() {
    for (len, mtu) in [
        (1usize, 576usize),
        (540, 576),
        (541, 576),
        (1164, 1200),
        (1165, 1200),
    ] {
        let message: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let f = Fragmenter::new(&message, 0, 0, mtu).unwrap();
        let count = f.fragment_count() as usize;
        assert_eq!(count, len.div_ceil(mtu - FRAGMENT_HEADER_SIZE));
        assert_eq!(f.len(), count);
        let mut joined = Vec::new();
        let mut buf = vec![0u8; mtu];
        let mut writer = f.clone();
        for (i, frag) in f.enumerate() {
            assert!(frag.datagram_len() <= mtu);
            let n = writer.write_next(&mut buf).unwrap().unwrap();
            assert_eq!(buf[..n], frag.to_vec()[..]);
            assert_eq!(parse_fragment(&buf[..n]), Ok(frag));
            assert_eq!(frag.header.index as usize, i);
            joined.extend_from_slice(frag.payload);
        }
        assert!(writer.write_next(&mut buf).is_none());
        assert_eq!(joined, message);
    }
}
