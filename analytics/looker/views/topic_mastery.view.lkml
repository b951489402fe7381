# One row per tenant, exam, user, topic and UTC day with answers (analytics_topic_mastery).
# Accuracy (full credit), credit (points over maximum points, partial credit included) and mean
# time are ratios of sums, so they stay right at any grain.
view: topic_mastery {
  sql_table_name: analytics_topic_mastery ;;

  dimension: row_key {
    primary_key: yes
    hidden: yes
    type: string
    sql: ${TABLE}.tenant_id || '|' || ${TABLE}.exam_code || '|' || ${TABLE}.user_id || '|'
      || COALESCE(CAST(${TABLE}.topic_id AS VARCHAR), '') || '|' || CAST(${TABLE}.day AS VARCHAR) ;;
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

  dimension: user_id {
    type: string
    sql: ${TABLE}.user_id ;;
  }

  dimension: topic_id {
    type: number
    sql: ${TABLE}.topic_id ;;
  }

  dimension: topic_name {
    type: string
    sql: ${TABLE}.topic_name ;;
  }

  dimension_group: answered {
    type: time
    timeframes: [date, week, month, quarter, year]
    datatype: date
    convert_tz: no
    sql: ${TABLE}.day ;;
  }

  dimension: latest_theta {
    label: "Theta after the day's last answer in the topic"
    type: number
    value_format_name: decimal_2
    sql: ${TABLE}.latest_theta ;;
  }

  dimension: latest_se {
    label: "SE after the day's last answer in the topic"
    type: number
    value_format_name: decimal_2
    sql: ${TABLE}.latest_se ;;
  }

  dimension: cumulative_accuracy {
    description: "Accuracy over all days up to this one, for this user and topic."
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.cumulative_accuracy ;;
  }

  dimension: cumulative_credit {
    description: "Credit (share of the points) over all days up to this one, for this user and topic."
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.cumulative_credit ;;
  }

  measure: attempts {
    type: sum
    sql: ${TABLE}.attempts ;;
  }

  measure: correct {
    type: sum
    sql: ${TABLE}.correct ;;
  }

  measure: accuracy {
    type: number
    value_format_name: percent_1
    sql: 1.0 * ${correct} / NULLIF(${attempts}, 0) ;;
  }

  measure: points {
    description: "Score points earned (0 .. m-1 per answer; 1 for a right answer to a 0/1 item)."
    type: sum
    sql: ${TABLE}.points ;;
  }

  measure: max_points {
    description: "Score points available: each answered item's top score."
    type: sum
    sql: ${TABLE}.max_points ;;
  }

  measure: credit {
    description: "Share of the points: partial credit on items scored in ordered categories, the accuracy on 0/1 items."
    type: number
    value_format_name: percent_1
    sql: 1.0 * ${points} / NULLIF(${max_points}, 0) ;;
  }

  measure: timed_attempts {
    hidden: yes
    type: sum
    sql: ${TABLE}.timed_attempts ;;
  }

  measure: total_time_ms {
    hidden: yes
    type: sum
    sql: ${TABLE}.total_time_ms ;;
  }

  measure: mean_time_seconds {
    description: "Mean client-reported time per answer (answers without a time are left out)."
    type: number
    value_format_name: decimal_1
    sql: 1.0 * ${total_time_ms} / NULLIF(${timed_attempts}, 0) / 1000.0 ;;
  }

  measure: mean_latest_theta {
    type: average
    value_format_name: decimal_2
    sql: ${latest_theta} ;;
  }

  measure: users {
    type: count_distinct
    sql: ${user_id} ;;
  }
}
