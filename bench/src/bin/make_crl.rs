//! Writes a signed CRL with N random revoked serials (for measuring a large CRL reload):
//! `make_crl --ca-cert CA.pem --ca-key CA.key --entries N --out FILE [--revoke CERT.pem]`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use certgate::tls::crl::CrlBuilder;
use certgate::tls::pki::Issued;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut ca_cert, mut ca_key, mut out, mut entries, mut revoke) =
        (None, None, None, 1_000_000usize, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--ca-cert" => ca_cert = Some(PathBuf::from(value())),
            "--ca-key" => ca_key = Some(PathBuf::from(value())),
            "--out" => out = Some(PathBuf::from(value())),
            "--entries" => entries = value().parse().expect("--entries N"),
            "--revoke" => revoke = Some(PathBuf::from(value())),
            other => panic!("unknown argument {other}"),
        }
    }
    let (ca_cert, ca_key, out) = (
        ca_cert.expect("--ca-cert"),
        ca_key.expect("--ca-key"),
        out.expect("--out"),
    );
    let ca = Issued::load(&ca_cert, &ca_key).expect("CA certificate and key");
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ entries as u64;
    let serials = (0..entries).map(|_| {
        let mut s = Vec::with_capacity(16);
        for _ in 0..2 {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            s.extend_from_slice(&(z ^ (z >> 31)).to_be_bytes());
        }
        s[0] &= 0x7f;
        s
    });
    let now = SystemTime::now();
    let mut b = CrlBuilder::new(&ca)
        .expect("CRL builder")
        .this_update(now - Duration::from_secs(60))
        .next_update(Some(now + Duration::from_secs(86_400)))
        .crl_number(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .revoke_all(serials);
    if let Some(cert) = revoke {
        let pem = std::fs::read(&cert).expect("--revoke file");
        let cert = boring::x509::X509::from_pem(&pem).expect("--revoke: a PEM certificate");
        b = b.revoke_cert(&cert).expect("revoke");
    }
    std::fs::write(&out, b.to_der().expect("sign CRL")).expect("write CRL");
    println!("{} entries -> {}", entries, out.display());
}
