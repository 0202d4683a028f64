use super::*;

fn hdrs(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn cfg() -> DeflateConfig {
    DeflateConfig::default()
}

fn reset_both() -> Agreed {
    Agreed {
        send_bits: 15,
        send_reset: true,
        recv_reset: true,
    }
}

#[test]
fn parameters_parse_by_rfc_7692_section_7_1() {
    let p = parse_params(
        [
            " server_no_context_takeover",
            "client_max_window_bits",
            "server_max_window_bits=\"10\"",
        ]
        .into_iter(),
    )
    .unwrap();
    assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
    assert_eq!(p.server_max_window_bits, Some(10));
    assert_eq!(p.client_max_window_bits, Some(None));
    let p = parse_params(["client_max_window_bits=8"].into_iter()).unwrap();
    assert_eq!(p.client_max_window_bits, Some(Some(8)));
    for bad in [
        &["server_max_window_bits"][..],
        &["server_max_window_bits=7"],
        &["server_max_window_bits=16"],
        &["server_max_window_bits=010"],
        &["client_max_window_bits=x"],
        &["server_no_context_takeover=1"],
        &["client_no_context_takeover", "client_no_context_takeover"],
        &["x_custom"],
    ] {
        assert!(parse_params(bad.iter().copied()).is_err(), "{bad:?}");
    }
}

#[test]
fn a_browser_offer_is_answered_without_context_takeover_by_default() {
    // Chromium's offer, and Firefox's.
    for offer in [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate",
    ] {
        let (a, v) = accept_offer(&hdrs(&[offer]), &cfg()).unwrap();
        assert_eq!(
            v,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(a, reset_both());
    }
    // With context takeover allowed, only what the client asked for.
    let takeover = DeflateConfig {
        context_takeover: true,
        ..cfg()
    };
    let (a, v) = accept_offer(
        &hdrs(&["permessage-deflate; client_max_window_bits"]),
        &takeover,
    )
    .unwrap();
    assert_eq!(v, "permessage-deflate");
    assert!(!a.send_reset && !a.recv_reset);
    let (a, v) = accept_offer(
        &hdrs(&["permessage-deflate; client_no_context_takeover; server_max_window_bits=10"]),
        &takeover,
    )
    .unwrap();
    assert_eq!(
        v,
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"
    );
    assert_eq!((a.send_bits, a.send_reset, a.recv_reset), (10, false, true));
}

#[test]
fn the_first_valid_offer_wins_and_others_are_declined() {
    let h = hdrs(&[
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; server_max_window_bits=\"12\"; client_max_window_bits",
    ]);
    let (a, v) = accept_offer(&h, &cfg()).unwrap();
    assert_eq!(a.send_bits, 12);
    assert!(v.to_str().unwrap().ends_with("server_max_window_bits=12"));
    // A cap below the offer wins.
    let capped = DeflateConfig {
        max_window_bits: 10,
        ..cfg()
    };
    let (a, _) = accept_offer(&h, &capped).unwrap();
    assert_eq!(a.send_bits, 10);
    assert!(accept_offer(&hdrs(&["x-webkit-deflate-frame"]), &cfg()).is_none());
    assert!(accept_offer(&hdrs(&["permessage-deflate; foo"]), &cfg()).is_none());
    let off = DeflateConfig {
        enabled: false,
        ..cfg()
    };
    assert!(accept_offer(&hdrs(&["permessage-deflate"]), &off).is_none());
}

#[test]
fn a_service_answer_is_checked_against_the_offer() {
    let ok = |v: &str| accept_response(&HeaderValue::from_str(v).unwrap(), &cfg());
    let a =
        ok("permessage-deflate; server_no_context_takeover; client_no_context_takeover").unwrap();
    assert_eq!(a, reset_both());
    // Tomcat keeps its context when the first element is declined.
    let a = ok("permessage-deflate;client_no_context_takeover").unwrap();
    assert!(a.send_reset && !a.recv_reset);
    assert_eq!(
        ok("permessage-deflate; client_max_window_bits=9")
            .unwrap()
            .send_bits,
        9
    );
    for bad in [
        "permessage-deflate, permessage-deflate",
        "x-webkit-deflate-frame",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=5",
        "permessage-deflate; mystery",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
    assert!(offers_service(&cfg(), true) && !offers_service(&cfg(), false));
    let always = DeflateConfig {
        service: ServiceDeflate::Always,
        ..cfg()
    };
    assert!(offers_service(&always, false));
}

/// The examples of RFC 7692 §7.2.3, inflated by wsrelay's codec.
#[test]
fn the_rfc_7692_examples_inflate() {
    let mut c = Codec::new(reset_both(), &cfg());
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(c.inflate(&hello, 100).unwrap(), b"Hello");
    // §7.2.3.3: a stored block; §7.2.3.4: BFINAL set.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(c.inflate(&stored, 100).unwrap(), b"Hello");
    let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(c.inflate(&last, 100).unwrap(), b"Hello");
    // §7.2.3.2: the second "Hello" refers to the first through the shared window.
    let mut t = Codec::new(
        Agreed {
            recv_reset: false,
            ..reset_both()
        },
        &cfg(),
    );
    assert_eq!(t.inflate(&hello, 100).unwrap(), b"Hello");
    assert_eq!(
        t.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(),
        b"Hello"
    );
    assert!(t.held_bytes() > 0, "a context taken over is kept");
    // Without the shared window the second message cannot be read.
    assert!(matches!(
        c.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100),
        Err(InflateError::Corrupt(_))
    ));
}

#[test]
fn compressed_messages_read_back_and_hold_no_state_without_takeover() {
    let text: Vec<u8> = b"{\"service\":\"discoverableclient\",\"status\":\"UP\"} "
        .iter()
        .cycle()
        .take(10_000)
        .copied()
        .collect();
    for agreed in [
        reset_both(),
        Agreed {
            send_bits: 8,
            ..reset_both()
        },
        Agreed {
            send_bits: 9,
            send_reset: false,
            recv_reset: false,
        },
    ] {
        let mut tx = Codec::new(agreed, &cfg());
        let mut rx = Codec::new(agreed, &cfg());
        for round in 0..3 {
            let z = tx.compress(&text, <[u8]>::to_vec).unwrap();
            assert!(!z.ends_with(&TAIL), "the flush tail is removed");
            if agreed.send_bits > 8 {
                assert!(z.len() < text.len() / 4, "{agreed:?}: {} bytes", z.len());
            } else {
                assert!(z.len() > text.len(), "stored blocks only");
            }
            assert_eq!(
                rx.inflate(&z, text.len()).unwrap(),
                text,
                "{agreed:?} {round}"
            );
        }
        if agreed.send_reset {
            assert_eq!(tx.held_bytes() + rx.held_bytes(), 0);
        } else {
            assert!(tx.held_bytes() > 0 && rx.held_bytes() > 0);
        }
    }
}

#[test]
fn inflating_stops_just_past_the_limit_and_bad_data_is_an_error() {
    let mut c = Codec::new(reset_both(), &cfg());
    let zeros = vec![0u8; 4 << 20];
    let z = c.compress(&zeros, <[u8]>::to_vec).unwrap();
    assert!(z.len() < 64 << 10, "{} bytes", z.len());
    match c.inflate(&z, 64 << 10) {
        Err(InflateError::TooBig(n)) => assert_eq!(n, (64 << 10) + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.inflate(&z, 4 << 20).unwrap().len(), 4 << 20);
    assert!(matches!(
        c.inflate(&[0xff, 0xff, 0xff, 0x00], 100),
        Err(InflateError::Corrupt(_))
    ));
    // The pooled inflater was reset after the error.
    assert_eq!(
        c.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100)
            .unwrap(),
        b"Hello"
    );
}
