fn main() {
    print!("{}", ingress_failover::api::crd::crd_yaml());
}
