#include "controlplane/store/etcd_store.h"

#include <catch2/catch.hpp>

namespace mesh::store {
namespace {

TEST_CASE("etcd URLs name the endpoints, TLS and credentials, and anything else is refused") {
  auto plain = EtcdStore::ParseUrl("etcd://10.0.0.1:2379,10.0.0.2:2379");
  REQUIRE(plain.ok());
  CHECK(plain->endpoints == std::vector<std::string>{"10.0.0.1:2379", "10.0.0.2:2379"});
  CHECK(!plain->tls);
  CHECK(plain->username.empty());
  auto secure = EtcdStore::ParseUrl("etcds://mesh:s3cret@etcd-0:2379");
  REQUIRE(secure.ok());
  CHECK(secure->tls);
  CHECK(secure->username == "mesh");
  CHECK(secure->password == "s3cret");
  CHECK(secure->endpoints == std::vector<std::string>{"etcd-0:2379"});
  CHECK(absl::IsInvalidArgument(EtcdStore::ParseUrl("http://etcd:2379").status()));
  CHECK(absl::IsInvalidArgument(EtcdStore::ParseUrl("etcd://").status()));
}

TEST_CASE("A prefix's range end is the prefix with its last byte incremented") {
  CHECK(RangeEnd("/registry/") == "/registry0");
  CHECK(RangeEnd("a\xff") == "b");
  CHECK(RangeEnd("\xff\xff") == std::string(1, '\0'));
  CHECK(RangeEnd("") == std::string(1, '\0'));
}

TEST_CASE("Opening a store with an endpoint that is not host:port fails at once") {
  EtcdStore::Options options;
  options.endpoints = {"no-port-here"};
  CHECK(absl::IsInvalidArgument(EtcdStore::Open(options).status()));
  options.endpoints = {"127.0.0.1:2379", "[::1]:2379"};
  CHECK(absl::IsInvalidArgument(EtcdStore::Open(options).status()));
}

}  // namespace
}  // namespace mesh::store
