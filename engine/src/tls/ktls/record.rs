//! Control records after the handoff: what a non-application record means, pure code.
//!
//! With kTLS RX the kernel decrypts every record and hands a record that is
//! not application data to `recvmsg` alone, with its type in a cmsg. The
//! engine accepts exactly two kinds: a close_notify alert (end of stream) and,
//! in TLS 1.3, KeyUpdate handshake messages. Everything else ends the
//! connection, after an alert where one can be sent.

use super::keys::Version;

/// TLS record content types (RFC 8446 §5.1).
pub mod content {
    /// change_cipher_spec.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// alert.
    pub const ALERT: u8 = 21;
    /// handshake.
    pub const HANDSHAKE: u8 = 22;
    /// application_data.
    pub const APPLICATION_DATA: u8 = 23;
}

/// Alert descriptions the engine sends.
pub mod alert {
    /// close_notify.
    pub const CLOSE_NOTIFY: u8 = 0;
    /// unexpected_message.
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    /// decode_error.
    pub const DECODE_ERROR: u8 = 50;
    /// internal_error.
    pub const INTERNAL_ERROR: u8 = 80;
    /// no_renegotiation.
    pub const NO_RENEGOTIATION: u8 = 100;
}

const KEY_UPDATE: u8 = 24;

/// What the engine does about one received non-application record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// close_notify: the peer's end of stream.
    CloseNotify,
    /// TLS 1.3 KeyUpdates: re-key the receive side `count` times; send our
    /// own KeyUpdate (and re-key the send side) when `requested`.
    KeyUpdate {
        /// How many KeyUpdate messages the record held (almost always 1).
        count: usize,
        /// Whether any of them had update_requested.
        requested: bool,
    },
    /// Not acceptable here: close, sending this alert first.
    Refuse(u8, &'static str),
    /// The peer sent a fatal alert (or one we do not accept): close without answering.
    PeerAlert(u8),
}

/// Classify one decrypted record of `record_type` holding `data`.
pub fn classify(version: Version, record_type: u8, data: &[u8]) -> Control {
    match record_type {
        content::ALERT => match data {
            [_, alert::CLOSE_NOTIFY] => Control::CloseNotify,
            [_, description] => Control::PeerAlert(*description),
            _ => Control::Refuse(alert::DECODE_ERROR, "malformed alert record"),
        },
        content::HANDSHAKE => handshake(version, data),
        _ => Control::Refuse(alert::UNEXPECTED_MESSAGE, "unexpected record type"),
    }
}

fn handshake(version: Version, mut data: &[u8]) -> Control {
    if version == Version::Tls12 {
        // A ClientHello on an established TLS 1.2 connection is a renegotiation.
        return Control::Refuse(alert::NO_RENEGOTIATION, "renegotiation is refused");
    }
    let (mut count, mut requested) = (0, false);
    while !data.is_empty() {
        let [kind, a, b, c, rest @ ..] = data else {
            return Control::Refuse(alert::UNEXPECTED_MESSAGE, "fragmented handshake message");
        };
        let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
        if rest.len() < len {
            return Control::Refuse(alert::UNEXPECTED_MESSAGE, "fragmented handshake message");
        }
        match (*kind, &rest[..len]) {
            (KEY_UPDATE, [0]) => {}
            (KEY_UPDATE, [1]) => requested = true,
            (KEY_UPDATE, _) => return Control::Refuse(alert::DECODE_ERROR, "malformed KeyUpdate"),
            _ => {
                return Control::Refuse(
                    alert::UNEXPECTED_MESSAGE,
                    "post-handshake message other than KeyUpdate",
                )
            }
        }
        count += 1;
        data = &rest[len..];
    }
    if count == 0 {
        return Control::Refuse(alert::UNEXPECTED_MESSAGE, "empty handshake record");
    }
    Control::KeyUpdate { count, requested }
}

/// The KeyUpdate(update_not_requested) handshake message we send in answer.
pub const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [KEY_UPDATE, 0, 0, 1, 0];

/// An alert record's body: fatal, except close_notify, which is a warning.
pub fn alert_body(description: u8) -> [u8; 2] {
    let level = if description == alert::CLOSE_NOTIFY {
        1
    } else {
        2
    };
    [level, description]
}

#[cfg(test)]
mod tests {
    use super::*;
    use Version::*;

    #[test]
    fn alerts() {
        assert_eq!(classify(Tls13, 21, &[1, 0]), Control::CloseNotify);
        assert_eq!(classify(Tls12, 21, &[1, 0]), Control::CloseNotify);
        assert_eq!(classify(Tls13, 21, &[2, 40]), Control::PeerAlert(40));
        assert!(matches!(
            classify(Tls13, 21, &[2]),
            Control::Refuse(alert::DECODE_ERROR, _)
        ));
        assert_eq!(alert_body(0), [1, 0]);
        assert_eq!(alert_body(10), [2, 10]);
    }

    #[test]
    fn key_updates() {
        assert_eq!(
            classify(Tls13, 22, &[24, 0, 0, 1, 0]),
            Control::KeyUpdate {
                count: 1,
                requested: false
            }
        );
        assert_eq!(
            classify(Tls13, 22, &[24, 0, 0, 1, 1]),
            Control::KeyUpdate {
                count: 1,
                requested: true
            }
        );
        assert_eq!(
            classify(Tls13, 22, &[24, 0, 0, 1, 0, 24, 0, 0, 1, 1]),
            Control::KeyUpdate {
                count: 2,
                requested: true
            }
        );
        assert_eq!(KEY_UPDATE_NOT_REQUESTED, [24, 0, 0, 1, 0]);
    }

    #[test]
    fn everything_else_is_refused() {
        for (v, t, d) in [
            (Tls13, 22, &[24, 0, 0, 1, 2][..]),
            (Tls13, 22, &[24, 0, 0, 2, 0][..]),
            (Tls13, 22, &[24, 0][..]),
            (Tls13, 22, &[][..]),
            (Tls13, 22, &[4, 0, 0, 1, 0][..]),
            (Tls12, 22, &[1, 0, 0, 0][..]),
            (Tls13, 20, &[1][..]),
            (Tls13, 99, &[1][..]),
        ] {
            assert!(
                matches!(classify(v, t, d), Control::Refuse(..)),
                "{v:?} {t} {d:?}"
            );
        }
        assert!(matches!(
            classify(Tls12, 22, &[1, 0, 0, 0]),
            Control::Refuse(alert::NO_RENEGOTIATION, _)
        ));
    }
}
