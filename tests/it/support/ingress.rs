//! Real ingresses in front of the gateway for the forward-auth tests: Debian's nginx (with
//! `auth_request`) and Caddy (`forward_auth`), each on a free loopback port, killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An ingress process and the port it listens on.
pub struct Ingress {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ingress {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait_listening(mut self, what: &str) -> Ingress {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_dir(self.dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("{what} exited at start ({status}):\n{log}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return self;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} did not listen on {addr}");
    }
}

/// nginx as ingress-nginx configures it: `auth_request` to the gateway's `/.tessera/auth`
/// with the original URL and method, the identity headers the gateway answers with copied
/// into the proxied request (`X-User`, `X-Groups`), and a `401` sent to the gateway's sign-in
/// with the original URL. The auth subrequest leaves from `127.0.0.2` (`proxy_bind`), so the
/// gateway can tell the ingress from a client on `127.0.0.1`.
pub fn nginx(gateway: SocketAddr, upstream: SocketAddr) -> Ingress {
    let [port] = super::free_ports();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /_tessera_auth {{
      internal;
      proxy_pass http://{gateway}/.tessera/auth;
      proxy_bind 127.0.0.2;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
    location @signin {{
      return 302 http://{gateway}/.tessera/login?rd=$scheme://$http_host$request_uri;
    }}
    location / {{
      auth_request /_tessera_auth;
      auth_request_set $tessera_user $upstream_http_x_user;
      auth_request_set $tessera_groups $upstream_http_x_groups;
      proxy_set_header X-User $tessera_user;
      proxy_set_header X-Groups $tessera_groups;
      error_page 401 = @signin;
      proxy_pass http://{upstream};
    }}
  }}
}}
"#
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx-light)");
    Ingress { child, port, dir }.wait_listening("nginx")
}

/// Caddy with `forward_auth` to the gateway's `/.tessera/forward-auth` (Caddy sends the
/// original method and URI as `X-Forwarded-Method`/`-Uri`, the host as `X-Forwarded-Host`)
/// and the identity headers copied into the proxied request.
pub fn caddy(gateway: SocketAddr, upstream: SocketAddr) -> Ingress {
    let [port] = super::free_ports();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        r#"{{
  admin off
  auto_https off
  storage file_system {dir}
}}
http://127.0.0.1:{port} {{
  forward_auth {gateway} {{
    uri /.tessera/forward-auth
    copy_headers X-User X-Groups
  }}
  reverse_proxy {upstream}
}}
"#,
        dir = dir.path().display()
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(log_file(dir.path(), "caddy.log"))
        .spawn()
        .expect("caddy (apt-get install caddy)");
    Ingress { child, port, dir }.wait_listening("caddy")
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).unwrap())
}
