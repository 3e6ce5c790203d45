-- The real lyaml (and cjson) for kongsplit's tests: what Kong's own libraries make of a value.
--
--   luajit tests/lua/lyaml_oracle.lua MODE < requests.json > answers.json
--
-- Needs lyaml (Debian lua-yaml 6.2.8, the version Kong pins) and lua-cjson on LUA_PATH /
-- LUA_CPATH: `.tools/bin/luajit` from `bash .ci/install-tools` sets both.
--
-- stdin is a JSON array of requests; stdout a JSON array of answers, one per request, each
-- {"ok": true, "value": ...} or {"ok": false, "error": "..."} (a Lua error in that request).
-- Values cross in a tagged form, so that no JSON convention hides a Lua type:
--   a string or boolean is itself; a number is {"num": "%.17g"}; lyaml's or cjson's null is
--   {"null": true}; a table is {"table": [[key, value], ...]} (a sequence has keys 1..n).
--
-- MODE
--   implicit     request: a string. lyaml's own default implicit resolver (the function its
--                load applies to plain scalars and its dump uses to decide quoting).
--   load         request: YAML text. lyaml.load(text).
--   dump         request: a value. lyaml.dump({value}), the whole stream text.
--   export       request: a config table. The text Kong's GET /config builds with lyaml
--                (kong/db/declarative/export.lua fd_emitter/to_yaml_string): the top-level
--                non-list fields first, then each entity as its own {name = {entity}} dump with
--                the "---\n" / "\n..." framing cut and the repeated "name:" line dropped.
--                Entity names are taken in the order given by the request's "order" list.
--   unserialize  request: a string posted as `config`. Kong's reading
--                (kong/db/declarative/init.lua _M:unserialize with no file name): cjson.decode
--                first; when that is not a table, lyaml.load; lyaml's nulls become cjson's.
--                The answer's value is {"parser": "cjson"|"lyaml", "config": value}.

local cjson = require "cjson"
local lyaml = require "lyaml"
local functional = require "lyaml.functional"

local mode = arg[1]
-- The tagged form nests three JSON levels per Lua level: lift cjson's default limit (1000).
cjson.encode_max_depth(10000)
cjson.decode_max_depth(10000)

-- lyaml's default resolver chain is a local of lyaml/init.lua; lyaml.dump keeps it as an
-- upvalue (`default`). Reach the real function instead of rebuilding the chain here.
local function default_implicit()
  local i = 1
  while true do
    local name, value = debug.getupvalue(lyaml.dump, i)
    if name == nil then break end
    if name == "default" then return value.implicit_scalar end
    i = i + 1
  end
  error("lyaml.dump has no upvalue `default`: not lyaml 6.2.8?")
end

local function is_null(v)
  return v == cjson.null or functional.isnull(v)
end

local function tagged(v)
  local t = type(v)
  if t == "string" or t == "boolean" then
    return v
  elseif t == "number" then
    return { num = string.format("%.17g", v) }
  elseif is_null(v) then
    return { null = true }
  elseif t == "table" then
    local pairs_out = {}
    for k, item in pairs(v) do
      pairs_out[#pairs_out + 1] = { tagged(k), tagged(item) }
    end
    return { table = pairs_out }
  end
  error("cannot tag a " .. t)
end

local function untagged(v, null)
  local t = type(v)
  if t == "string" or t == "boolean" then
    return v
  elseif t ~= "table" then
    error("bad tagged value of type " .. t)
  elseif v.num ~= nil then
    return assert(tonumber(v.num), "bad number " .. tostring(v.num))
  elseif v.null ~= nil then
    return null
  elseif v.table ~= nil then
    local out = {}
    for _, kv in ipairs(v.table) do
      out[untagged(kv[1], null)] = untagged(kv[2], null)
    end
    return out
  end
  error("bad tagged table")
end

-- kong/db/declarative/export.lua to_yaml_string: lyaml.dump of one document, framing cut.
local function to_yaml_string(tbl)
  local text = lyaml.dump({ tbl })
  return text:sub(5, -5)
end

local function export(request)
  local config = untagged(request.config, lyaml.null)
  local top, out = {}, {}
  for k, v in pairs(config) do
    local is_entity_list = false
    for _, name in ipairs(request.order) do
      if name == k then is_entity_list = true end
    end
    if not is_entity_list then top[k] = v end
  end
  out[#out + 1] = to_yaml_string(top)
  for _, name in ipairs(request.order) do
    for n, entity in ipairs(config[name] or {}) do
      local text = to_yaml_string({ [name] = { entity } })
      if n > 1 then
        text = assert(text:match("^[^\n]+\n(.+)$"))
      end
      out[#out + 1] = text
    end
  end
  return table.concat(out)
end

local function unserialize(text)
  local parser = "cjson"
  local ok, config = pcall(cjson.decode, text)
  if not ok or type(config) ~= "table" then
    parser = "lyaml"
    config = lyaml.load(text)
    if type(config) ~= "table" then
      error("expected an object")
    end
  end
  return { parser = parser, config = tagged(config) }
end

local handlers = {
  implicit = function(request)
    return tagged(default_implicit()(request))
  end,
  load = function(request)
    local value = lyaml.load(request)
    if value == nil then return { null = true } end
    return tagged(value)
  end,
  dump = function(request)
    return lyaml.dump({ untagged(request, lyaml.null) })
  end,
  export = export,
  unserialize = unserialize,
}

local handler = handlers[mode]
if handler == nil then
  io.stderr:write("usage: luajit lyaml_oracle.lua implicit|load|dump|export|unserialize\n")
  os.exit(2)
end

local requests = cjson.decode(io.read("*a"))
local answers = {}
for i, request in ipairs(requests) do
  local ok, value = pcall(handler, request)
  if ok then
    answers[i] = { ok = true, value = value }
  else
    answers[i] = { ok = false, error = tostring(value) }
  end
end
io.write(cjson.encode(answers))
