//! The `FailoverPolicy` API (`ingressfailover.io/v1alpha1`) and its CRD.

pub mod crd;
pub mod id;
pub mod reference;
pub mod spec;
pub mod status;

pub use id::PolicyId;
pub use spec::*;
pub use status::*;
