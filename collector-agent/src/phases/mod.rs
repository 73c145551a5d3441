//! What each phase fetches and stages. `api`: a forge's API (GitHub today); `facade`: the
//! git history, the same for every platform.

pub mod api;
pub mod facade;
