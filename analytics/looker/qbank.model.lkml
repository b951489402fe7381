# qbank analytics: explores over the service database's analytics views (migration
# 0002_analytics, documented in service/analytics_models.py). Point the connection at the
# service's PostgreSQL database; analytics/looker is the LookML project root.
connection: "qbank_postgres"

include: "/views/*.view.lkml"

datagroup: qbank_hourly {
  sql_trigger: SELECT CURRENT_DATE ;;
  max_cache_age: "1 hour"
}

persist_with: qbank_hourly

# Every explore is filtered to the viewer's tenant (Looker user attribute qbank_tenant_id),
# as the service filters every query on tenant_id.

explore: topic_mastery {
  label: "Topic mastery"
  description: "Answers per user, topic and UTC day: attempts, accuracy, time, latest theta."
  access_filter: {
    field: topic_mastery.tenant_id
    user_attribute: qbank_tenant_id
  }
  join: topics {
    type: left_outer
    relationship: many_to_one
    sql_on: ${topic_mastery.topic_id} = ${topics.topic_id} AND ${topic_mastery.tenant_id} = ${topics.tenant_id} ;;
  }
}

explore: blueprint_coverage {
  label: "Blueprint coverage"
  description: "Live items per exam, topic and difficulty against the blueprint targets."
  access_filter: {
    field: blueprint_coverage.tenant_id
    user_attribute: qbank_tenant_id
  }
  join: topics {
    type: left_outer
    relationship: many_to_one
    sql_on: ${blueprint_coverage.topic_id} = ${topics.topic_id} AND ${blueprint_coverage.tenant_id} = ${topics.tenant_id} ;;
  }
}

explore: item_exposure_daily {
  label: "Item exposure by day"
  description: "Share of the exam's quizzes of a UTC day that were administered each item."
  access_filter: {
    field: item_exposure_daily.tenant_id
    user_attribute: qbank_tenant_id
  }
}

explore: selector_outcomes {
  label: "Selector A/B outcomes"
  description: "Per selection rule and assignment: quizzes, final SE, score, max exposure, test overlap."
  access_filter: {
    field: selector_outcomes.tenant_id
    user_attribute: qbank_tenant_id
  }
}
