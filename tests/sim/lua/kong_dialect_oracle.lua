-- Kong's DB-less /config dialect with the real lyaml and lua-cjson, for the simulator's tests.
--
--   luajit tests/sim/lua/kong_dialect_oracle.lua MODE < requests.json > answers.json
--
-- The same protocol as tests/lua/lyaml_oracle.lua (a JSON array of requests in, one answer
-- each out, {"ok": true, "value": ...} or {"ok": false, "error": "..."}; values in its tagged
-- form: a number is {"num": "%.17g"}, null {"null": true}, a table {"table": [[k, v], ...]}).
--
-- MODE
--   export       request: {"config": tagged, "entities": [names of the entity lists]}. The text kong/db/declarative/export.lua builds
--                (fd_emitter: the non-entity keys first, then each entity dumped alone as
--                {name = {entity}} by to_yaml_string, the repeated "name:" line dropped).
--                Entity types are taken in the order of the tagged pairs. lyaml.dump walks a
--                mapping with pairs(), whose order Lua leaves open and LuaJIT varies from one
--                process to the next (its string hashes are seeded per process), so two Kong
--                nodes export one config with differently ordered keys. Here `pairs` follows
--                the order of the tagged pairs, so a test can compare texts byte for byte;
--                nothing else of lyaml's dump changes.
--   unserialize  request: a string. kong/db/declarative/init.lua _M:unserialize with no file
--                name, as written there: cjson.safe first, then pcall(lyaml.load); the value,
--                or Kong's err ("failed parsing declarative configuration: ...") as the error.
--   cjson        request: a string. cjson.safe.decode: the value, or cjson's message.

local cjson = require "cjson.safe"
local lyaml = require "lyaml"
local functional = require "lyaml.functional"

cjson.encode_max_depth(10000)
cjson.decode_max_depth(10000)

local mode = arg[1]
local ORDER = setmetatable({}, { __mode = "k" })
local real_pairs = pairs

local function ordered_pairs(t)
  local keys = ORDER[t]
  if keys == nil then return real_pairs(t) end
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
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
    local out = {}
    for k, item in real_pairs(v) do out[#out + 1] = { tagged(k), tagged(item) } end
    return { table = out }
  end
  error("cannot tag a " .. t)
end

local function untagged(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return v end
  if v.num ~= nil then return assert(tonumber(v.num)) end
  if v.null ~= nil then return lyaml.null end
  local out, keys = {}, {}
  for _, kv in ipairs(v.table) do
    local k = untagged(kv[1])
    out[k] = untagged(kv[2])
    keys[#keys + 1] = k
  end
  ORDER[out] = keys
  return out
end

local function to_yaml_string(tbl)
  pairs = ordered_pairs
  local ok, yaml = pcall(lyaml.dump, { tbl })
  pairs = real_pairs
  if not ok then error(yaml) end
  return yaml:sub(5, -5)
end

local function export(request)
  local config = untagged(request.config)
  local is_entity = {}
  for _, name in ipairs(request.entities) do is_entity[name] = true end
  local top, top_keys, out, current = {}, {}, {}, nil
  for _, k in ipairs(ORDER[config]) do
    if not is_entity[k] then
      top[k] = config[k]
      top_keys[#top_keys + 1] = k
    end
  end
  ORDER[top] = top_keys
  out[#out + 1] = to_yaml_string(top)
  for _, name in ipairs(ORDER[config]) do
    if is_entity[name] then
      for _, entity in ipairs(config[name]) do
        local text = to_yaml_string({ [name] = { entity } })
        if name == current then text = assert(text:match("^[^\n]+\n(.+)$")) end
        out[#out + 1] = text
        current = name
      end
    end
  end
  return table.concat(out)
end

-- kong/db/declarative/init.lua _M:unserialize(contents) with filename == nil
local function unserialize(contents)
  local dc_table, err = cjson.decode(contents)
  if type(dc_table) ~= "table" then
    local pok
    pok, dc_table, err = pcall(lyaml.load, contents)
    if not pok then
      err = dc_table
      dc_table = nil
    elseif type(dc_table) ~= "table" then
      err = "expected an object"
      dc_table = nil
    end
  end
  if type(dc_table) ~= "table" then
    error("failed parsing declarative configuration" .. (err and (": " .. err) or ""), 0)
  end
  return tagged(dc_table)
end

local handlers = {
  export = export,
  unserialize = unserialize,
  cjson = function(text)
    local value, err = cjson.decode(text)
    if value == nil and err then error(err, 0) end
    return tagged(value)
  end,
}

local handler = handlers[mode]
if handler == nil then
  io.stderr:write("usage: luajit kong_dialect_oracle.lua export|unserialize|cjson\n")
  os.exit(2)
end
local requests = cjson.decode(io.read("*a"))
local answers = {}
for i, request in ipairs(requests) do
  local ok, value = pcall(handler, request)
  answers[i] = ok and { ok = true, value = value } or { ok = false, error = tostring(value) }
end
io.write(cjson.encode(answers))
