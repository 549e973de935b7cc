//! AWS Signature Version 4 for S3 requests: the canonical request, the string to sign and the
//! `Authorization` header, as AWS documents them. Enough for dsm's few S3 calls (GET, PUT,
//! DELETE, list), so no cloud SDK is needed.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secrets::Secret;

/// The SHA-256 of an empty body, hex-encoded (what a GET or DELETE signs as its payload).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Credentials to sign with.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id (not secret: it names the key).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token, for temporary credentials.
    pub session_token: Option<Secret>,
}

/// One request to sign. `path` is the URI path as sent (already percent-encoded), `query` the
/// decoded query parameters, `headers` every header to sign besides `host` and `x-amz-date`.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The `Host` header's value (with the port when it is not the scheme's default).
    pub host: &'a str,
    /// The encoded path, starting with `/`.
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    /// Other headers to sign (names in any case).
    pub headers: &'a [(String, String)],
    /// The hex SHA-256 of the body (also sent as `x-amz-content-sha256` for S3).
    pub payload_sha256: &'a str,
}

/// The headers a signed request carries: `x-amz-date`, `Authorization` and, with temporary
/// credentials, `x-amz-security-token`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = &amz_date[..8];
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), trim_inner(v)))
        .collect();
    headers.push(("host".into(), request.host.to_owned()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.expose().to_owned()));
    }
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path,
        canonical_query(request.query),
        canonical_headers,
        signed_headers,
        request.payload_sha256
    );
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key.expose()).as_bytes(),
        day.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let mut out = vec![
        ("x-amz-date".to_owned(), amz_date),
        (
            "authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
                credentials.access_key_id
            ),
        ),
    ];
    if let Some(token) = &credentials.session_token {
        out.push(("x-amz-security-token".into(), token.expose().to_owned()));
    }
    out
}

/// Percent-encodes `text` the way SigV4 wants: everything but `A-Z a-z 0-9 - _ . ~` (and `/`
/// when `keep_slash`, for object keys in paths).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string in canonical form: each name and value encoded, sorted by name then value.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The hex SHA-256 of a body.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Header values are signed trimmed, with runs of spaces inside made one.
fn trim_inner(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example_s3() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        }
    }

    fn signature(headers: &[(String, String)]) -> String {
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        auth.rsplit_once("Signature=").unwrap().1.to_owned()
    }

    // AWS's published example "GET Object" of the S3 SigV4 documentation (header-based auth).
    #[test]
    fn s3_get_object_example() {
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let headers = [
            ("Range".to_owned(), "bytes=0-9".to_owned()),
            ("x-amz-content-sha256".to_owned(), EMPTY_SHA256.to_owned()),
        ];
        let out = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &headers,
                payload_sha256: EMPTY_SHA256,
            },
            &example_s3(),
            "us-east-1",
            "s3",
            now,
        );
        assert_eq!(
            out.iter().find(|(k, _)| k == "authorization").unwrap().1,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    // The same documentation's "PUT Object" example: a body, a `$` in the key, a `Date` header.
    #[test]
    fn s3_put_object_example() {
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let body = b"Welcome to Amazon S3.";
        let hash = sha256_hex(body);
        assert_eq!(
            hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let headers = [
            (
                "Date".to_owned(),
                "Fri, 24 May 2013 00:00:00 GMT".to_owned(),
            ),
            (
                "x-amz-storage-class".to_owned(),
                "REDUCED_REDUNDANCY".to_owned(),
            ),
            ("x-amz-content-sha256".to_owned(), hash.clone()),
        ];
        let out = sign(
            &Request {
                method: "PUT",
                host: "examplebucket.s3.amazonaws.com",
                path: &format!("/{}", uri_encode("test$file.text", true)),
                query: &[],
                headers: &headers,
                payload_sha256: &hash,
            },
            &example_s3(),
            "us-east-1",
            "s3",
            now,
        );
        assert_eq!(
            signature(&out),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    // The same documentation's "GET Bucket (List Objects)" example: query parameters.
    #[test]
    fn s3_list_objects_example() {
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let headers = [("x-amz-content-sha256".to_owned(), EMPTY_SHA256.to_owned())];
        let out = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query: &[
                    ("max-keys".into(), "2".into()),
                    ("prefix".into(), "J".into()),
                ],
                headers: &headers,
                payload_sha256: EMPTY_SHA256,
            },
            &example_s3(),
            "us-east-1",
            "s3",
            now,
        );
        assert_eq!(
            signature(&out),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    // `get-vanilla` of AWS's SigV4 test suite (service `service`, no payload header).
    #[test]
    fn test_suite_get_vanilla() {
        let now = Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap();
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        };
        let out = sign(
            &Request {
                method: "GET",
                host: "example.amazonaws.com",
                path: "/",
                query: &[],
                headers: &[],
                payload_sha256: EMPTY_SHA256,
            },
            &creds,
            "us-east-1",
            "service",
            now,
        );
        assert_eq!(
            out.iter().find(|(k, _)| k == "authorization").unwrap().1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .replace(", ", ",")
        );
    }

    #[test]
    fn encoding_follows_sigv4() {
        assert_eq!(uri_encode("a b/c~d*é", true), "a%20b/c~d%2A%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(
            canonical_query(&[("b".into(), "2".into()), ("a".into(), "x y".into())]),
            "a=x%20y&b=2"
        );
    }
}
