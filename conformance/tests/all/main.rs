//! The conformance cases against this project's tower layer, over real
//! hyper servers on 127.0.0.1, for every engine, HTTP/1.1 and HTTP/2.

mod host;
mod misbehaving;
mod tower_layer;
