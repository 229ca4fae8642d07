//! ServiceAccount controller: every namespace has a `default` ServiceAccount, recreated
//! when deleted (kube-controller-manager's serviceaccount-controller).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use skiff_client::is_status;

use crate::{pernamespace, Context};

pub const NAME: &str = "serviceaccount-controller";

const DEFAULT: &str = "default";

pub async fn run(context: Arc<Context>) {
    pernamespace::run::<ServiceAccount, _, _>(context, NAME, DEFAULT, |namespace, context| async move {
        ensure_default(&namespace, &context).await
    })
    .await;
}

async fn ensure_default(namespace: &str, context: &Context) -> Result<Action, kube::Error> {
    let api = Api::<ServiceAccount>::namespaced(context.client.clone(), namespace);
    if api.get_metadata_opt(DEFAULT).await?.is_none() {
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT.into()), ..ObjectMeta::default() },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            // Created meanwhile, or the namespace began terminating.
            Err(e) if is_status(&e, &[403, 409]) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
