//! HTTPS beside HTTP: compiled in only when certificates are baked (see
//! build.rs and `website_https`).

use crate::{Args, Devices, CERTS};
use core::future::Future;
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::Poll;
use lamina::alloc::rc::Rc;
use lamina::alloc::vec::Vec;
use lamina::prelude::*;
use lamina_http::{serve, serve_with, Config, Hsts, RedirectToHttps, StaticFiles};
use lamina_tls::{Identities, ServerOptions, TlsAcceptor};

/// Serves the site over HTTPS on `--https-port` with the baked
/// certificates, and over HTTP on `--port` (or redirects HTTP to HTTPS).
pub async fn serve_https_and_http<P: Platform>(
    env: &Env<P>,
    devices: &Devices<P>,
    args: &Args,
    files: Rc<StaticFiles>,
    config: Config,
) -> Result<(), String> {
    let stack = &devices.service;
    let runtime = env.runtime().clone();
    let http_address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.port));
    let http_error = |e| format!("cannot serve HTTP on port {}: {e}", args.port);
    let identities = Identities::from_kv(&CERTS, "")
        .await
        .map_err(|e| format!("the baked certificates: {e}"))?;
    let names: Vec<&str> = identities.names().collect();
    info!(
        "website: HTTPS on port {} with {}",
        args.https_port,
        names.join(", ")
    );
    let tls = TlsAcceptor::new(
        identities,
        devices.clock.clone(),
        runtime.clone(),
        ServerOptions::default(),
    )
    .map_err(|e| format!("TLS: {e}"))?;
    let https_address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.https_port));
    let https_handler = Rc::new(Hsts::new(files.clone(), args.hsts_max_age));
    let https = async {
        let served = if args.hsts_max_age > 0 {
            serve_with(
                stack,
                https_address,
                Rc::new(tls),
                https_handler,
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        } else {
            serve_with(
                stack,
                https_address,
                Rc::new(tls),
                files.clone(),
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        };
        served.map_err(|e| format!("cannot serve HTTPS on port {}: {e}", args.https_port))
    };
    let http = async {
        let served = if args.redirect_https {
            let redirect = Rc::new(RedirectToHttps {
                port: args.https_port,
            });
            serve(
                stack,
                http_address,
                redirect,
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        } else {
            serve(
                stack,
                http_address,
                files.clone(),
                devices.clock.clone(),
                runtime.clone(),
                config.clone(),
            )
            .await
        };
        served.map_err(http_error)
    };
    first(https, http).await
}

/// Runs both servers; they return only on an error, and the first one ends
/// the unikernel with it.
async fn first<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let (mut a, mut b) = (pin!(a), pin!(b));
    core::future::poll_fn(|cx| {
        if let Poll::Ready(done) = a.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        b.as_mut().poll(cx)
    })
    .await
}
