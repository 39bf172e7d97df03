//! [`Routes`]: one area's routes (alarms, devices, tickets, …) together with the list of paths
//! they serve. Each area file builds one with [`Routes::route`] exactly as it would an axum
//! `Router`; `routes.rs` merges them. The path list is what lets a test compare the router
//! with the OpenAPI document both ways, so a route cannot be added without documenting it.

use axum::routing::MethodRouter;
use axum::Router;

use super::state::AppState;

/// An area's router and (for the tests) the paths it registered, in order.
pub struct Routes {
    router: Router<AppState>,
    #[cfg(test)]
    paths: Vec<&'static str>,
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            #[cfg(test)]
            paths: Vec::new(),
        }
    }

    /// Serves `methods` at `path` (axum syntax: `{id}` for a segment, `{*rest}` for the rest).
    pub fn route(mut self, path: &'static str, methods: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, methods);
        #[cfg(test)]
        self.paths.push(path);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        #[cfg(test)]
        self.paths.extend(other.paths);
        self
    }

    /// Every path served, as written in `route`.
    #[cfg(test)]
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}
