//! A plugin's replica for one thread.

use crate::Plugin;
use crate::pool::Loaded;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// The current thread's replica of a [`Plugin`], made by
/// [`Plugin::local`], for [`LocalHttpWasm`](crate::LocalHttpWasm).
///
/// It shares the plugin's module, options and counters, and has its own
/// pool of instances, made on this thread as requests need them (at most
/// [`PluginBuilder::pool_size`](crate::PluginBuilder::pool_size)). After
/// a [`Plugin::reload`] its next request starts a new pool on the new
/// module; requests already running finish on the old one. Neither `Send`
/// nor `Sync`: clones (cheap) share the replica, on this thread.
#[derive(Clone)]
pub struct LocalPlugin {
    inner: Rc<Replica>,
}

struct Replica {
    plugin: Plugin,
    /// The replica of the module of one generation of the plugin.
    current: RefCell<(u64, Arc<Loaded>)>,
}

impl LocalPlugin {
    pub(crate) fn new(plugin: Plugin) -> LocalPlugin {
        let (generation, loaded) = plugin.current();
        let replica = loaded.replica(plugin.pool_size());
        LocalPlugin { inner: Rc::new(Replica { plugin, current: RefCell::new((generation, Arc::new(replica))) }) }
    }

    /// The plugin this replicates.
    pub fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }

    /// The replica serving new requests, made anew after a reload.
    pub(crate) fn loaded(&self) -> Arc<Loaded> {
        let plugin = &self.inner.plugin;
        let mut current = self.inner.current.borrow_mut();
        if current.0 != plugin.generation() {
            let (generation, loaded) = plugin.current();
            *current = (generation, Arc::new(loaded.replica(plugin.pool_size())));
        }
        current.1.clone()
    }
}

impl fmt::Debug for LocalPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPlugin").field("plugin", &self.inner.plugin).finish_non_exhaustive()
    }
}
