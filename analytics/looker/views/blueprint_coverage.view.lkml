# One row per tenant, exam, topic and difficulty label with live items or a target
# (analytics_blueprint_coverage).
view: blueprint_coverage {
  sql_table_name: analytics_blueprint_coverage ;;

  dimension: row_key {
    primary_key: yes
    hidden: yes
    type: string
    sql: ${TABLE}.tenant_id || '|' || ${TABLE}.exam_code || '|'
      || COALESCE(CAST(${TABLE}.topic_id AS VARCHAR), '') || '|' || ${TABLE}.difficulty_label ;;
  }

  dimension: tenant_id {
    hidden: yes
    type: string
    sql: ${TABLE}.tenant_id ;;
  }

  dimension: exam_code {
    type: string
    sql: ${TABLE}.exam_code ;;
  }

  dimension: topic_id {
    type: number
    sql: ${TABLE}.topic_id ;;
  }

  dimension: topic_name {
    type: string
    sql: ${TABLE}.topic_name ;;
  }

  dimension: difficulty_label {
    type: string
    sql: ${TABLE}.difficulty_label ;;
  }

  dimension: status {
    description: "short (fewer live items than the target), met, or untargeted."
    type: string
    sql: ${TABLE}.status ;;
  }

  measure: published_items {
    type: sum
    sql: ${TABLE}.published_items ;;
  }

  measure: target_items {
    type: sum
    sql: ${TABLE}.target_items ;;
  }

  measure: gap_items {
    description: "Items missing to reach the targets (cells already met count 0)."
    type: sum
    sql: ${TABLE}.gap_items ;;
  }

  measure: published_in_targeted_cells {
    hidden: yes
    type: sum
    sql: CASE WHEN ${TABLE}.target_items IS NOT NULL THEN ${TABLE}.published_items END ;;
  }

  measure: coverage_ratio {
    type: number
    value_format_name: percent_0
    sql: 1.0 * ${published_in_targeted_cells} / NULLIF(${target_items}, 0) ;;
  }

  measure: cells_short {
    type: count
    filters: [status: "short"]
  }
}
