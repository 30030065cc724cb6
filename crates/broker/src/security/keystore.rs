//! Key stores and trust stores in the formats Kafka reads (`ssl.keystore.type`,
//! `ssl.truststore.type`): PEM (possibly with an encrypted PKCS#8 key and
//! `ssl.key.password`), PKCS12, and Java's JKS, so that a broker's existing
//! `server.properties` and the stores `keytool` made for it work unchanged.
//!
//! Passwords follow Kafka's `DefaultSslEngineFactory`: a PKCS12 or JKS key store
//! needs `ssl.keystore.password`; the key's password is `ssl.key.password`, or the
//! store's; a trust store's password is optional (without it a JKS store's
//! integrity is not checked, as in Java). No error names a password or a key's
//! bytes, only the setting and the file.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A store's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    Pem,
    Pkcs12,
    Jks,
}

impl StoreType {
    /// Reads `ssl.keystore.type` / `ssl.truststore.type` (Kafka's default is JKS).
    pub fn parse(setting: &str, value: Option<&str>) -> Result<StoreType, String> {
        let value = value.unwrap_or("JKS");
        match value.to_ascii_uppercase().as_str() {
            "PEM" => Ok(StoreType::Pem),
            "PKCS12" => Ok(StoreType::Pkcs12),
            "JKS" => Ok(StoreType::Jks),
            _ => Err(format!("{setting}={value} is not supported; Runnel reads PEM, PKCS12 and JKS stores")),
        }
    }
}

/// A server's certificate chain (its own certificate first) and private key.
pub struct KeyMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads a key store. `what` names where it came from, for errors.
pub fn read_key_store(
    store_type: StoreType,
    what: &str,
    bytes: &[u8],
    store_password: Option<&str>,
    key_password: Option<&str>,
) -> Result<KeyMaterial, String> {
    match store_type {
        StoreType::Pem => {
            if store_password.is_some_and(|p| !p.is_empty()) {
                // Kafka refuses it too: a PEM store has no store password, only the key's.
                return Err(format!("{what}: ssl.keystore.password cannot be given with a PEM key store; only ssl.key.password (for an encrypted key)"));
            }
            Ok(KeyMaterial { chain: pem_certificates(what, bytes)?, key: pem_private_key(what, bytes, key_password)? })
        }
        StoreType::Pkcs12 | StoreType::Jks => {
            let Some(store_password) = store_password else {
                return Err(format!("{what}: a {store_type:?} key store needs ssl.keystore.password"));
            };
            let key_password = key_password.unwrap_or(store_password);
            if store_type == StoreType::Pkcs12 {
                pkcs12_key_store(what, bytes, store_password, key_password)
            } else {
                jks::read(what, bytes, Some(store_password))?.key_material(what, key_password)
            }
        }
    }
}

/// Reads a trust store: every certificate it trusts.
pub fn read_trust_store(store_type: StoreType, what: &str, bytes: &[u8], password: Option<&str>) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = match store_type {
        StoreType::Pem => return pem_certificates(what, bytes),
        StoreType::Pkcs12 => {
            let archive = p12_keystore::Pkcs12Archive::from_pkcs12(bytes, password.unwrap_or(""))
                .map_err(|e| format!("{what}: not a PKCS12 store this password opens ({})", describe_p12_error(&e)))?;
            // Java's trusted-certificate entries, and certificates tied to no key
            // (a store made by `openssl pkcs12 -nokeys` has no trust attribute).
            archive
                .certs
                .into_iter()
                .filter(|bag| bag.trusted || bag.local_key_id.is_none())
                .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
                .collect::<Vec<_>>()
        }
        StoreType::Jks => jks::read(what, bytes, password)?.trusted.into_iter().map(CertificateDer::from).collect(),
    };
    if certs.is_empty() {
        return Err(format!("{what} holds no trusted certificate"));
    }
    Ok(certs)
}

fn describe_p12_error(e: &p12_keystore::error::Error) -> String {
    // The crate's MAC failure is how a wrong password shows.
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("mac") {
        "wrong password, or the file is damaged".to_string()
    } else {
        text
    }
}

fn pkcs12_key_store(what: &str, bytes: &[u8], store_password: &str, key_password: &str) -> Result<KeyMaterial, String> {
    if store_password != key_password {
        return Err(format!("{what}: a PKCS12 key store is read with one password; ssl.key.password differs from ssl.keystore.password"));
    }
    let store = p12_keystore::KeyStore::from_pkcs12(bytes, store_password, p12_keystore::Pkcs12ImportPolicy::Strict)
        .map_err(|e| format!("{what}: not a PKCS12 store this password opens ({})", describe_p12_error(&e)))?;
    let Some((_alias, chain)) = store.private_key_chain() else {
        return Err(format!("{what}: the PKCS12 store holds no private key with its certificate chain"));
    };
    if chain.certs().is_empty() {
        return Err(format!("{what}: the PKCS12 store's private key has no certificate"));
    }
    let certs: Vec<CertificateDer<'static>> = chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect();
    let key = with_ec_public_key(what, chain.key().as_der().to_vec(), &certs[0])?;
    Ok(KeyMaterial { chain: certs, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)) })
}

fn pem_certificates(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| format!("{what}: not readable PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no CERTIFICATE"));
    }
    Ok(certs)
}

const ENCRYPTED_KEY_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_KEY_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The PEM's private key: an unencrypted PKCS#8, PKCS#1 or SEC1 key, or (with
/// `ssl.key.password`) an encrypted PKCS#8 one, as Kafka reads PEM stores.
pub fn pem_private_key(what: &str, pem: &[u8], key_password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(pem);
    let key_password = key_password.filter(|p| !p.is_empty());
    if let Some(start) = text.find(ENCRYPTED_KEY_BEGIN) {
        let Some(password) = key_password else {
            return Err(format!("{what}: the private key is encrypted; give its password in ssl.key.password"));
        };
        let body = &text[start + ENCRYPTED_KEY_BEGIN.len()..];
        let Some(end) = body.find(ENCRYPTED_KEY_END) else {
            return Err(format!("{what}: the ENCRYPTED PRIVATE KEY block has no end line"));
        };
        let base64_text: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64_text.as_bytes())
            .map_err(|_| format!("{what}: the ENCRYPTED PRIVATE KEY block is not base64"))?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| format!("{what}: the ENCRYPTED PRIVATE KEY is not an encrypted PKCS#8 key ({e})"))?;
        let plain = encrypted
            .decrypt(password)
            .map_err(|_| format!("{what}: the encrypted private key does not open with ssl.key.password (wrong password, or a cipher Runnel does not read: PBES2 with AES or 3DES)"))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec())));
    }
    if key_password.is_some() {
        // Kafka reads ssl.key.password as the password of an encrypted key; an
        // unencrypted one with a password is most likely the wrong file.
        return Err(format!("{what}: ssl.key.password is set but the private key is not encrypted (no ENCRYPTED PRIVATE KEY block)"));
    }
    // Never the key's bytes in a message: only where it was looked for.
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!("{what} holds no readable PRIVATE KEY ({})", match e {
            rustls_pki_types::pem::Error::NoItemsFound => "none found".to_string(),
            _ => "malformed PEM".to_string(),
        })
    })
}

/// One DER element: (tag, content) and the rest.
fn der_element<'a>(what: &str, data: &'a [u8]) -> Result<(u8, &'a [u8], &'a [u8]), String> {
    let bad = || format!("{what}: a private key is not readable DER");
    let (&tag, rest) = data.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        (rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize), &rest[n..])
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}


fn der_encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Java writes EC keys in PKCS#8 without their public key, which ring needs:
/// such a key is rewritten with the public key of its certificate (the store's
/// chain starts with it). Any other key is returned as it is.
fn with_ec_public_key(what: &str, pkcs8: Vec<u8>, leaf: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let (_, info, _) = der_element(what, &pkcs8)?;
    let (_, version, rest) = der_element(what, info)?;
    let (_, algorithm, rest) = der_element(what, rest)?;
    let (_, ec_key, _) = der_element(what, rest)?;
    let (_, oid, _) = der_element(what, algorithm)?;
    if oid != EC_PUBLIC_KEY_OID {
        return Ok(pkcs8);
    }
    // ECPrivateKey ::= SEQUENCE { version, privateKey OCTET STRING, [0] parameters OPTIONAL, [1] publicKey OPTIONAL }
    let (_, ec_fields, _) = der_element(what, ec_key)?;
    let (_, ec_version, rest) = der_element(what, ec_fields)?;
    let (_, private, mut rest) = der_element(what, rest)?;
    while !rest.is_empty() {
        let (tag, _, next) = der_element(what, rest)?;
        if tag == 0xa1 {
            return Ok(pkcs8);
        }
        rest = next;
    }
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| format!("{what}: the key's certificate is not readable: {e}"))?;
    let point = &cert.public_key().subject_public_key.data;
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(point);
    let mut ec = der_encode(0x02, ec_version);
    ec.extend(der_encode(0x04, private));
    ec.extend(der_encode(0xa1, &der_encode(0x03, &bit_string)));
    let mut fields = der_encode(0x02, version);
    fields.extend(der_encode(0x30, algorithm));
    fields.extend(der_encode(0x04, &der_encode(0x30, &ec)));
    Ok(der_encode(0x30, &fields))
}

/// Java's proprietary JKS format (`sun.security.provider.JavaKeyStore`):
/// private key entries protected by Sun's SHA-1 key protector, trusted
/// certificate entries, and a SHA-1 integrity digest keyed by the password.
mod jks {
    use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY as SHA1};

    use super::{der_element, KeyMaterial, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls_pki_types::CertificateDer;

    const MAGIC: u32 = 0xFEED_FEED;
    const JCEKS_MAGIC: u32 = 0xCECE_CECE;
    const PRIVATE_KEY_ENTRY: u32 = 1;
    const TRUSTED_CERT_ENTRY: u32 = 2;
    /// Sun's key protector (`1.3.6.1.4.1.42.2.17.1.1`), DER content octets.
    const KEY_PROTECTOR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];
    const DIGEST_LEN: usize = 20;
    /// Bounds on what a store file may claim (a damaged file cannot make us allocate much).
    const MAX_ENTRIES: u32 = 100_000;

    pub struct JksStore {
        /// (alias, encrypted key, certificate chain) for each private key entry.
        keys: Vec<(String, Vec<u8>, Vec<Vec<u8>>)>,
        /// Trusted certificate entries, and (as Java's trust managers take them)
        /// the first certificate of each key entry.
        pub trusted: Vec<Vec<u8>>,
    }

    struct Reader<'a> {
        what: &'a str,
        data: &'a [u8],
        at: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.data.len() - self.at < n {
                return Err(format!("{}: the JKS store ends early (damaged or not a JKS file)", self.what));
            }
            let out = &self.data[self.at..self.at + n];
            self.at += n;
            Ok(out)
        }
        fn u16(&mut self) -> Result<u16, String> {
            let b = self.take(2)?;
            Ok(u16::from_be_bytes([b[0], b[1]]))
        }
        fn u32(&mut self) -> Result<u32, String> {
            let b = self.take(4)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        /// Java's `DataInput.readUTF` (the aliases and type names are ASCII in practice).
        fn utf(&mut self) -> Result<String, String> {
            let len = self.u16()? as usize;
            Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
        }
        fn bytes(&mut self) -> Result<Vec<u8>, String> {
            let len = self.u32()? as usize;
            Ok(self.take(len)?.to_vec())
        }
    }

    /// Java's password bytes for JKS: each UTF-16 unit, big-endian.
    fn password_bytes(password: &str) -> Vec<u8> {
        password.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
    }

    pub fn read(what: &str, data: &[u8], password: Option<&str>) -> Result<JksStore, String> {
        let mut r = Reader { what, data, at: 0 };
        match r.u32()? {
            MAGIC => {}
            JCEKS_MAGIC => return Err(format!("{what}: a JCEKS store; convert it to PKCS12 (keytool -importkeystore -deststoretype PKCS12)")),
            _ => return Err(format!("{what}: not a JKS store (a PKCS12 file needs ssl.*.type=PKCS12)")),
        }
        let version = r.u32()?;
        if version != 1 && version != 2 {
            return Err(format!("{what}: JKS version {version} is not one Java writes"));
        }
        let count = r.u32()?;
        if count > MAX_ENTRIES {
            return Err(format!("{what}: the JKS store claims {count} entries (damaged?)"));
        }
        let mut store = JksStore { keys: Vec::new(), trusted: Vec::new() };
        let cert = |r: &mut Reader<'_>| -> Result<Vec<u8>, String> {
            if version == 2 {
                let cert_type = r.utf()?;
                if cert_type != "X.509" {
                    return Err(format!("{what}: a {cert_type} certificate; only X.509 ones are used"));
                }
            }
            r.bytes()
        };
        for _ in 0..count {
            let tag = r.u32()?;
            let alias = r.utf()?;
            let _created = r.take(8)?;
            match tag {
                PRIVATE_KEY_ENTRY => {
                    let protected = r.bytes()?;
                    let chain_len = r.u32()?;
                    if chain_len > MAX_ENTRIES {
                        return Err(format!("{what}: a JKS chain of {chain_len} certificates (damaged?)"));
                    }
                    let chain = (0..chain_len).map(|_| cert(&mut r)).collect::<Result<Vec<_>, _>>()?;
                    if let Some(first) = chain.first() {
                        store.trusted.push(first.clone());
                    }
                    store.keys.push((alias, protected, chain));
                }
                TRUSTED_CERT_ENTRY => store.trusted.push(cert(&mut r)?),
                other => return Err(format!("{what}: JKS entry type {other} (secret keys are JCEKS/PKCS12 only)")),
            }
        }
        let signed = r.at;
        let stored_digest = r.take(DIGEST_LEN)?;
        if let Some(password) = password {
            let mut ctx = Context::new(&SHA1);
            ctx.update(&password_bytes(password));
            ctx.update(b"Mighty Aphrodite");
            ctx.update(&data[..signed]);
            if ctx.finish().as_ref() != stored_digest {
                return Err(format!("{what}: the JKS store's integrity check failed: wrong password, or the file is damaged"));
            }
        }
        Ok(store)
    }

    impl JksStore {
        /// The first private key entry, its key recovered with `password`.
        pub fn key_material(self, what: &str, password: &str) -> Result<KeyMaterial, String> {
            let Some((alias, protected, chain)) = self.keys.into_iter().next() else {
                return Err(format!("{what}: the JKS store holds no private key entry"));
            };
            if chain.is_empty() {
                return Err(format!("{what}: JKS key entry {alias:?} has no certificate"));
            }
            let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
            let key = super::with_ec_public_key(what, recover_key(what, &protected, password)?, &chain[0])?;
            Ok(KeyMaterial { chain, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)) })
        }
    }

    /// Sun's `KeyProtector.recover`: EncryptedPrivateKeyInfo whose data is
    /// salt (20) ‖ key XOR keystream ‖ SHA-1(password ‖ key); the keystream's
    /// blocks are SHA-1(password ‖ previous block), starting from the salt.
    fn recover_key(what: &str, protected: &[u8], password: &str) -> Result<Vec<u8>, String> {
        let (tag, info, _) = der_element(what, protected)?;
        let (algorithm_tag, algorithm, rest) = der_element(what, info)?;
        let (oid_tag, oid, _) = der_element(what, algorithm)?;
        let (data_tag, data, _) = der_element(what, rest)?;
        if tag != 0x30 || algorithm_tag != 0x30 || oid_tag != 0x06 || data_tag != 0x04 {
            return Err(format!("{what}: a JKS private key entry is not an EncryptedPrivateKeyInfo"));
        }
        if oid != KEY_PROTECTOR_OID {
            return Err(format!("{what}: a JKS private key protected by an algorithm other than Sun's key protector"));
        }
        if data.len() < 2 * DIGEST_LEN {
            return Err(format!("{what}: a JKS private key entry is too short"));
        }
        let (salt, rest) = data.split_at(DIGEST_LEN);
        let (encrypted, check) = rest.split_at(rest.len() - DIGEST_LEN);
        let password = password_bytes(password);
        let mut block = salt.to_vec();
        let mut key = Vec::with_capacity(encrypted.len());
        for chunk in encrypted.chunks(DIGEST_LEN) {
            let mut ctx = Context::new(&SHA1);
            ctx.update(&password);
            ctx.update(&block);
            block = ctx.finish().as_ref().to_vec();
            key.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
        }
        let mut ctx = Context::new(&SHA1);
        ctx.update(&password);
        ctx.update(&key);
        if ctx.finish().as_ref() != check {
            return Err(format!("{what}: the JKS private key does not open with its password (ssl.key.password, or ssl.keystore.password when unset)"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    //! The stores in `testdata/` were made by `keytool` (Java 17: PKCS12 with
    //! AES and HmacSHA256, JKS with a key password apart from the store's) and
    //! `openssl` (a `-legacy` PKCS12 with RC2/3DES; a PEM key encrypted with
    //! `pkcs8 -topk8 -v2 aes-256-cbc`).
    use super::*;

    const BROKER_P12: &[u8] = include_bytes!("testdata/broker.p12");
    const LEGACY_P12: &[u8] = include_bytes!("testdata/legacy.p12");
    const BROKER_JKS: &[u8] = include_bytes!("testdata/broker.jks");
    const TRUST_JKS: &[u8] = include_bytes!("testdata/trust.jks");
    const TRUST_P12: &[u8] = include_bytes!("testdata/trust.p12");
    const ENCRYPTED_PEM: &[u8] = include_bytes!("testdata/encrypted-keystore.pem");

    /// The key opens and fits its certificate (rustls checks that they belong together).
    fn usable(material: KeyMaterial) -> String {
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(material.chain.clone(), material.key)
            .expect("the key fits the certificate");
        crate::security::tls::subject_dn(&material.chain[0]).expect("subject")
    }

    #[test]
    fn pkcs12_key_stores_from_keytool_and_openssl_legacy() {
        let m = read_key_store(StoreType::Pkcs12, "test", BROKER_P12, Some("p12-secret"), None).expect("keytool PKCS12");
        assert_eq!(usable(m), "CN=localhost,O=Runnel Test");
        let m = read_key_store(StoreType::Pkcs12, "test", LEGACY_P12, Some("legacy-secret"), Some("legacy-secret")).expect("legacy PKCS12");
        assert_eq!(usable(m), "O=Runnel Test,CN=localhost", "openssl's subject, its RDNs in the order given");
        let err = read_key_store(StoreType::Pkcs12, "test", BROKER_P12, Some("wrong"), None).err().expect("wrong password");
        assert!(err.contains("wrong password") && !err.contains("wrong\""), "{err}");
        let err = read_key_store(StoreType::Pkcs12, "test", BROKER_P12, None, None).err().expect("no password");
        assert!(err.contains("ssl.keystore.password"), "{err}");
        let err = read_key_store(StoreType::Pkcs12, "test", BROKER_JKS, Some("jks-secret"), None).err().expect("JKS read as PKCS12");
        assert!(err.starts_with("test: not a PKCS12 store"), "{err}");
    }

    #[test]
    fn jks_key_stores_with_their_own_key_password() {
        let m = read_key_store(StoreType::Jks, "test", BROKER_JKS, Some("jks-secret"), Some("jks-key-secret")).expect("keytool JKS");
        assert_eq!(usable(m), "CN=localhost,O=Runnel Test");
        // The key's password defaults to the store's, which is not it here.
        let err = read_key_store(StoreType::Jks, "test", BROKER_JKS, Some("jks-secret"), None).err().expect("key password missing");
        assert!(err.contains("does not open"), "{err}");
        let err = read_key_store(StoreType::Jks, "test", BROKER_JKS, Some("not-it"), Some("jks-key-secret")).err().expect("wrong store password");
        assert!(err.contains("integrity check failed"), "{err}");
        let err = read_key_store(StoreType::Jks, "test", BROKER_P12, Some("p12-secret"), None).err().expect("PKCS12 read as JKS");
        assert!(err.contains("ssl.*.type=PKCS12"), "{err}");
        // Every truncation is an error, never a panic.
        for len in 0..BROKER_JKS.len() {
            assert!(read_key_store(StoreType::Jks, "test", &BROKER_JKS[..len], Some("jks-secret"), Some("jks-key-secret")).is_err());
        }
    }

    #[test]
    fn trust_stores_in_each_format() {
        for (store_type, bytes, password) in
            [(StoreType::Jks, TRUST_JKS, Some("trust-secret")), (StoreType::Jks, TRUST_JKS, None), (StoreType::Pkcs12, TRUST_P12, Some("trust-secret"))]
        {
            let certs = read_trust_store(store_type, "test", bytes, password).expect("trust store");
            assert_eq!(certs.len(), 1);
            assert_eq!(crate::security::tls::subject_dn(&certs[0]).unwrap(), "CN=localhost,O=Runnel Test");
        }
        assert!(read_trust_store(StoreType::Jks, "test", TRUST_JKS, Some("wrong")).is_err());
        assert!(read_trust_store(StoreType::Pkcs12, "test", TRUST_P12, Some("wrong")).is_err());
    }

    #[test]
    fn encrypted_pem_keys_need_ssl_key_password() {
        let m = read_key_store(StoreType::Pem, "test", ENCRYPTED_PEM, None, Some("pem-secret")).expect("encrypted PKCS#8");
        assert_eq!(usable(m), "O=Runnel Test,CN=localhost");
        let err = read_key_store(StoreType::Pem, "test", ENCRYPTED_PEM, None, None).err().expect("no password");
        assert!(err.contains("give its password in ssl.key.password"), "{err}");
        let err = read_key_store(StoreType::Pem, "test", ENCRYPTED_PEM, None, Some("pem-wrong")).err().expect("wrong password");
        assert!(err.contains("does not open") && !err.contains("pem-wrong"), "{err}");
        let err = read_key_store(StoreType::Pem, "test", ENCRYPTED_PEM, Some("x"), Some("pem-secret")).err().expect("store password with PEM");
        assert!(err.contains("cannot be given with a PEM key store"), "{err}");
    }
}
