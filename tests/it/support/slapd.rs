//! A real OpenLDAP `slapd` (Debian packages `slapd`, `ldap-utils`) for tests: its own
//! `slapd.conf` and mdb database in a temporary folder, seeded with `slapadd`, listening on
//! free loopback ports (plain `ldap://`, and with `tls` also `ldaps://` and StartTLS with a
//! certificate made by `rcgen`), killed on drop. It never touches the system's slapd (which
//! the Debian package may have set up on port 389). A missing `slapd` is a test failure that
//! says how to install it — never a skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "slapd is not installed: run scripts/install-deps.sh \
(or `sudo DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils`)";

/// Where Debian installs the slapd binary (not on a normal user's PATH).
const SLAPD_PATHS: [&str; 2] = ["/usr/sbin/slapd", "slapd"];
const SLAPADD_PATHS: [&str; 2] = ["/usr/sbin/slapadd", "slapadd"];

pub const SUFFIX: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const SERVICE_DN: &str = "cn=svc,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "svc-secret";

/// The seeded directory. alice has two `ou` values (a multi-valued, memberOf-like attribute);
/// `st*r` has a filter metacharacter in its uid; two entries share one mail address.
const SEED: &str = "\
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: cn=svc,dc=example,dc=com
objectClass: person
cn: svc
sn: service
userPassword: svc-secret

dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
givenName: Alice
mail: alice@example.com
ou: admins
ou: staff
userPassword: wonderland

dn: uid=bob,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
givenName: Bob
mail: bob@example.com
ou: staff
userPassword: builder

dn: uid=st*r,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: st*r
cn: Star
sn: Star
mail: star@example.com
ou: staff
userPassword: twinkle

dn: uid=twin1,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: twin1
cn: Twin One
sn: Twin
mail: twins@example.com
userPassword: twin

dn: uid=twin2,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: twin2
cn: Twin Two
sn: Twin
mail: twins@example.com
userPassword: twin
";

/// TLS material of a server started with `Slapd::start_tls`.
pub struct SlapdTls {
    /// PEM file of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    /// `ldaps://` port.
    pub ldaps_port: u16,
}

/// A `slapd` process; killed on drop.
pub struct Slapd {
    child: Option<Child>,
    /// `ldap://` port (StartTLS is offered on it when started with TLS).
    pub port: u16,
    pub tls: Option<SlapdTls>,
    pub dir: tempfile::TempDir,
}

fn find(paths: &[&str]) -> String {
    for p in paths {
        let ok = if p.starts_with('/') {
            Path::new(p).exists()
        } else {
            Command::new(p)
                .arg("-VV")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if ok {
            return p.to_string();
        }
    }
    panic!("{INSTALL_HINT}");
}

/// An anonymous LDAPv3 simple bind, BER-encoded: message 1, version 3, empty DN and password.
const ANONYMOUS_BIND: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];

/// Does something on `port` answer an LDAP bind (with any result: a server requiring TLS
/// refuses it with confidentialityRequired)?
fn answers_bind(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(&ANONYMOUS_BIND).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let Ok(n) = s.read(&mut buf) else {
        return false;
    };
    // a BindResponse (APPLICATION 1 = 0x61) with its resultCode (ENUMERATED 0x0a 0x01)
    buf[..n]
        .windows(4)
        .any(|w| w[0] == 0x61 && w[2] == 0x0a && w[3] == 0x01)
}

/// A test CA (`ca.pem`) and a server certificate for 127.0.0.1/localhost signed by it
/// (`server.pem`, `server-key.pem`) in `dir`; returns the CA file. Also used by tests that
/// need an https server behind a private CA.
pub fn write_tls_material(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tessera test LDAP CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), server_key.serialize_pem()).unwrap();
    ca_file
}

fn write_conf(dir: &Path, tls: bool) -> PathBuf {
    let d = dir.display();
    let tls_lines = if tls {
        format!(
            "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server-key.pem\n# every operation but StartTLS itself needs TLS: a plain client gets no data\nsecurity tls=1\n"
        )
    } else {
        String::new()
    };
    let conf = format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
{tls_lines}
database mdb
maxsize 10485760
suffix \"{SUFFIX}\"
rootdn \"cn=admin,{SUFFIX}\"
rootpw admin-secret
directory {d}/db
access to attrs=userPassword by self =xw by anonymous auth by * none
access to * by * read
"
    );
    let path = dir.join("slapd.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

impl Slapd {
    /// A plain `ldap://` server.
    pub fn start() -> Slapd {
        Self::start_with(false)
    }

    /// Also `ldaps://` on a second port and StartTLS on the first, with a certificate for
    /// 127.0.0.1 signed by a fresh CA (`tls.ca_file`).
    pub fn start_tls() -> Slapd {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Slapd {
        let slapd = find(&SLAPD_PATHS);
        let slapadd = find(&SLAPADD_PATHS);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let ca_file = tls.then(|| write_tls_material(dir.path()));
        let conf = write_conf(dir.path(), tls);
        let seed = dir.path().join("seed.ldif");
        std::fs::write(&seed, SEED).unwrap();
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed)
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last_err = String::new();
        for _ in 0..10 {
            let [port, ldaps_port] = super::free_ports();
            let mut urls = format!("ldap://127.0.0.1:{port}/");
            if tls {
                urls.push_str(&format!(" ldaps://127.0.0.1:{ldaps_port}/"));
            }
            let log = std::fs::File::create(dir.path().join("slapd.log")).unwrap();
            let mut child = match Command::new(&slapd)
                .arg("-h")
                .arg(&urls)
                .arg("-f")
                .arg(&conf)
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
            {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
                Err(e) => panic!("cannot start slapd: {e}"),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if answers_bind(port) {
                    return Slapd {
                        child: Some(child),
                        port,
                        tls: ca_file.map(|ca_file| SlapdTls {
                            ca_file,
                            ldaps_port,
                        }),
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_err = std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default();
        }
        panic!("slapd did not start:\n{last_err}");
    }

    /// `ldap://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Stops the server (the directory is then "down").
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
