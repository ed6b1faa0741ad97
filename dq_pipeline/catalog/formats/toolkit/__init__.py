"""What the format modules share, one concept per module and one name per concept.

* `paths`     record paths for messages (`tables[3].columns.id`, `nodes["model.x"]`)
* `values`    a record's values checked and cleaned: the `Bad` record, `type_name`, `scalar_text`,
              `text_only`, `text_list`, `mapping`, `items`, `jsonable`, `short_hash`
* `documents` whole JSON/YAML documents (`load_document`) and streamed JSON sections (`json_sections`)
* `sniffing`  what a file's head shows, for detection (`read_head`, `outline`, `yaml_top_keys`, `artifact_kind`)
* `html_text` HTML descriptions reduced to text
* `wording`   entries and constraints in words: `compose_text`, `labelled`, `bounds`, `listing`, `show`
* `dbt`       what only the dbt formats share: Jinja made readable, tests as rules, artifact companions

Nothing here imports Dagster.
"""
