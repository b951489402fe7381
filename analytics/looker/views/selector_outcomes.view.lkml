# One row per tenant, exam, selection rule and assignment (analytics_selector_outcomes).
# The figures are already per arm, so they are dimensions: summing rates across arms means nothing.
view: selector_outcomes {
  sql_table_name: analytics_selector_outcomes ;;

  dimension: row_key {
    primary_key: yes
    hidden: yes
    type: string
    sql: ${TABLE}.tenant_id || '|' || ${TABLE}.exam_code || '|' || ${TABLE}.selector_rule || '|' || ${TABLE}.assignment ;;
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

  dimension: selector_rule {
    type: string
    sql: ${TABLE}.selector_rule ;;
  }

  dimension: assignment {
    description: "How the quiz got its rule: cohort, flag, default, or request (linear forms)."
    type: string
    sql: ${TABLE}.assignment ;;
  }

  dimension: users {
    type: number
    sql: ${TABLE}.users ;;
  }

  dimension: quizzes_finished {
    type: number
    sql: ${TABLE}.quizzes_finished ;;
  }

  dimension: mean_items_served {
    type: number
    value_format_name: decimal_1
    sql: ${TABLE}.mean_items_served ;;
  }

  dimension: mean_final_theta {
    type: number
    value_format_name: decimal_2
    sql: ${TABLE}.mean_final_theta ;;
  }

  dimension: mean_final_se {
    type: number
    value_format_name: decimal_3
    sql: ${TABLE}.mean_final_se ;;
  }

  dimension: mean_score {
    description: "Mean share of answers with full credit (finished quizzes)."
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.mean_score ;;
  }

  dimension: mean_credit {
    description: "Mean share of the points (finished quizzes): partial credit included; the mean score on 0/1 items."
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.mean_credit ;;
  }

  dimension: max_exposure_rate {
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.max_exposure_rate ;;
  }

  dimension: test_overlap {
    type: number
    value_format_name: percent_1
    sql: ${TABLE}.test_overlap ;;
  }

  measure: quizzes {
    type: sum
    sql: ${TABLE}.quizzes ;;
  }
}
