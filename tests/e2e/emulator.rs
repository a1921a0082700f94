//! The emulator's own guarantees the suite relies on, as AWS gives them.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use deployer_e2e::root;
use local_stack::Emulator;

/// Two conditional writes racing on one item: exactly one wins, as on
/// DynamoDB (moto alone let several win; the stack lock depends on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_writes_on_one_item_have_one_winner() {
    let emulator = Emulator::start(&root(), None)
        .await
        .expect("moto server starts");
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.sdk_config().await);
    dynamodb
        .create_table()
        .table_name("race")
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let dynamodb = Arc::new(dynamodb);
    for round in 0..60 {
        let contenders: Vec<_> = (0..32)
            .map(|n| {
                let dynamodb = dynamodb.clone();
                tokio::spawn(async move {
                    dynamodb
                        .update_item()
                        .table_name("race")
                        .key("id", AttributeValue::S(format!("lock-{round}")))
                        // The stack lock's shape (docs/state-machine.md, "Lock").
                        .update_expression(
                            "SET holder_sk = :me, holder_execution = :exec, lock_expires_at = :exp, last_started_sk = :me",
                        )
                        .condition_expression(
                            "(attribute_not_exists(holder_sk) OR lock_expires_at < :now OR holder_sk = :me) \
                             AND (attribute_not_exists(last_started_sk) OR last_started_sk <= :me)",
                        )
                        .expression_attribute_values(":me", AttributeValue::S(format!("sk-{n:02}")))
                        .expression_attribute_values(":exec", AttributeValue::S(format!("execution-{n}")))
                        .expression_attribute_values(":exp", AttributeValue::S("2999-01-01T00:00:00Z".into()))
                        .expression_attribute_values(":now", AttributeValue::S("2026-01-01T00:00:00Z".into()))
                        .send()
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut winners = 0;
        for contender in contenders {
            winners += usize::from(contender.await.unwrap());
        }
        assert_eq!(
            winners, 1,
            "round {round}: {winners} conditional writes won"
        );
    }
}
