view: topics {
  sql_table_name: topics ;;

  dimension: topic_id {
    primary_key: yes
    type: number
    sql: ${TABLE}.id ;;
  }

  dimension: tenant_id {
    hidden: yes
    type: string
    sql: ${TABLE}.tenant_id ;;
  }

  dimension: topic_name {
    type: string
    sql: ${TABLE}.name ;;
  }

  dimension: blueprint_code {
    type: string
    sql: ${TABLE}.blueprint_code ;;
  }

  dimension: parent_topic_id {
    type: number
    sql: ${TABLE}.parent_id ;;
  }
}
