# One row per tenant, exam, UTC day and item served that day (analytics_item_exposure_daily).
view: item_exposure_daily {
  sql_table_name: analytics_item_exposure_daily ;;

  dimension: row_key {
    primary_key: yes
    hidden: yes
    type: string
    sql: ${TABLE}.tenant_id || '|' || ${TABLE}.exam_code || '|' || CAST(${TABLE}.day AS VARCHAR) || '|'
      || CAST(${TABLE}.question_id AS VARCHAR) ;;
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

  dimension_group: served {
    type: time
    timeframes: [date, week, month]
    datatype: date
    convert_tz: no
    sql: ${TABLE}.day ;;
  }

  dimension: question_id {
    type: number
    sql: ${TABLE}.question_id ;;
  }

  dimension: external_ref {
    label: "Item id"
    type: string
    sql: ${TABLE}.external_ref ;;
  }

  dimension: sessions {
    description: "Quizzes of the exam served any item that day."
    type: number
    sql: ${TABLE}.sessions ;;
  }

  dimension: exposure_rate {
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.exposure_rate ;;
  }

  measure: administrations {
    type: sum
    sql: ${TABLE}.administrations ;;
  }

  measure: max_exposure_rate {
    type: max
    value_format_name: percent_1
    sql: ${exposure_rate} ;;
  }

  measure: mean_exposure_rate {
    type: average
    value_format_name: percent_1
    sql: ${exposure_rate} ;;
  }

  measure: items_served {
    type: count_distinct
    sql: ${question_id} ;;
  }
}
